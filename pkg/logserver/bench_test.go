package logserver

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// BenchmarkIndexSearch is the engine alone: a first page of 20 rows for a
// subject in an index of 100 000 entries with 3 subjects each (one of 100
// shared base images, a unique artifact, and a run shared by 6).
func BenchmarkIndexSearch(b *testing.B) {
	const n = 100000
	x, err := OpenIndex(filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	rows := make([]Row, 0, 1000)
	for i := range n {
		rows = append(rows, Row{Index: uint64(i), Kind: store.KindProvenance, RunID: fmt.Sprint("run-", i/6),
			Digest: subject(fmt.Sprint("doc-", i)), Offset: uint32(i%256) * 2400,
			Subjects: []string{subject(fmt.Sprint("artifact-", i)), subject(fmt.Sprint("base-", i%100))}})
		if len(rows) == cap(rows) {
			if _, err := x.Apply(rows, uint64(i+1)); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("index of %d entries built; heap in use %d KiB", n, ms.HeapInuse>>10)
	for _, c := range []struct {
		name string
		q    func(i int) Query
	}{
		{"popular", func(i int) Query { return Query{Subject: subject(fmt.Sprint("base-", i%100))} }},
		{"unique", func(i int) Query { return Query{Subject: subject(fmt.Sprint("artifact-", (i*7919)%n))} }},
		{"run", func(i int) Query { return Query{RunID: fmt.Sprint("run-", (i*31)%(n/6))} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				rows, _, err := x.Search(c.q(i), 0, n, 20)
				if err != nil || len(rows) == 0 {
					b.Fatal(len(rows), err)
				}
			}
		})
	}
}
