// Command logfixture builds a served log of N signed DSSE provenance
// documents in DIR, in-process through the same code `stepseal log serve`
// runs (pkg/logserver/logfixture), for `stepseal log serve DIR` to open
// unchanged. Used by hack/bench/logscale.sh. It prints one JSON line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"syscall"
	"time"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/logfixture"
	"github.com/stepseal/stepseal/pkg/signing"
)

func main() {
	dir := flag.String("dir", "", "the served log's directory (created; an existing one is extended)")
	n := flag.Int("n", 100000, "documents")
	writerKey := flag.String("writer-key", "", "private key that signs the documents")
	allow := flag.String("allow", "", "its public key, the one the log allows (what log serve --allow gets)")
	prefix := flag.String("prefix", "fixture", "document name prefix")
	popular := flag.Int("popular", logfixture.DefaultPopular, "distinct shared subjects")
	origin := flag.String("origin", "stepseal.dev/log", "the log's name, when DIR/log.key is created")
	writers := flag.Int("writers", 4096, "appends in flight (and Tessera's batch size)")
	batchAge := flag.Duration("batch-max-age", time.Second, "how long Tessera waits to fill a batch")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address while building (profiling)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { fmt.Fprintln(os.Stderr, http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if err := run(*dir, *n, *writerKey, *allow, *prefix, *popular, *origin, *writers, *batchAge); err != nil {
		fmt.Fprintln(os.Stderr, "logfixture:", err)
		os.Exit(1)
	}
}

func run(dir string, n int, writerKey, allow, prefix string, popular int, origin string, writers int, batchAge time.Duration) error {
	if dir == "" || writerKey == "" || allow == "" {
		return fmt.Errorf("-dir, -writer-key and -allow are required")
	}
	s, err := signing.LoadSigner(writerKey, nil)
	if err != nil {
		return err
	}
	v, err := signing.LoadVerifier(allow)
	if err != nil {
		return err
	}
	cpu0 := cpuTime()
	ticks := 0
	rep, err := logfixture.Build(context.Background(), dir, logfixture.Options{N: n, Signer: s, Allow: logserver.Keys{v},
		Prefix: prefix, Popular: popular, Origin: origin, Writers: writers, BatchMaxAge: batchAge,
		Progress: func(done int, el time.Duration) {
			if ticks++; ticks%10 == 0 {
				fmt.Fprintf(os.Stderr, "logfixture: %d/%d documents in %s (%.0f/s)\n", done, n, el.Round(time.Second), float64(done)/el.Seconds())
			}
		}})
	if err != nil {
		return err
	}
	cpu := cpuTime() - cpu0
	b, _ := json.Marshal(map[string]any{
		"fixtureEntries": rep.Checkpoint.Size, "appended": rep.Appended, "existing": rep.Existing,
		"seconds": rep.Elapsed.Seconds(), "perSecond": float64(rep.Appended+rep.Existing) / rep.Elapsed.Seconds(),
		"cpuMsPerDocument": float64(cpu.Microseconds()) / 1000 / float64(max(1, rep.Appended+rep.Existing)),
		"load":             loadavg(),
	})
	fmt.Println(string(b))
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	var a, b1, c string
	fmt.Sscan(string(b), &a, &b1, &c)
	return a + " " + b1 + " " + c
}
