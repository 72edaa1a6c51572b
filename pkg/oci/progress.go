package oci

import (
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// startProgress returns the channel to give go-containerregistry and a
// function that waits until the last update is printed. Both are no-ops
// when there is nowhere to write progress.
func (o *options) startProgress(what string) (chan<- v1.Update, func()) {
	w := o.progressWriter()
	if w == nil {
		return nil, func() {}
	}
	ch := make(chan v1.Update, 16)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var last time.Time
		var u v1.Update
		for u = range ch {
			if u.Error != nil {
				continue
			}
			if time.Since(last) < 200*time.Millisecond && u.Complete != u.Total {
				continue
			}
			last = time.Now()
			printProgress(w, what, u)
		}
		if u.Total > 0 {
			fmt.Fprintln(w)
		}
	}()
	return ch, func() { <-finished }
}

func printProgress(w io.Writer, what string, u v1.Update) {
	pct := 0.0
	if u.Total > 0 {
		pct = 100 * float64(u.Complete) / float64(u.Total)
	}
	fmt.Fprintf(w, "\r%s: %s / %s (%.0f%%)", what, mib(u.Complete), mib(u.Total), pct)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
