package awslog_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
)

// writerStats counts what writers were answered.
type writerStats struct {
	mu        sync.Mutex
	acked     []acked
	busy      int      // 503 with Retry-After (logserver.ErrBusy)
	down      int      // other unavailable answers (logserver.ErrUnavailable)
	answers   []string // the first few unavailable answers, for the log
	refusals  []error
	allErrors strings.Builder
}

func (ws *writerStats) ack(v logserver.Verified, subj, via string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.acked = append(ws.acked, acked{digest: v.Entry.Digest, subject: subj, index: v.Index, via: via})
}

// failed records a failed attempt: true if it may be retried (could not
// check: unavailable), false for a refusal or any other answer.
func (ws *writerStats) failed(err error) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.allErrors.WriteString(err.Error() + "\n")
	switch {
	case errors.Is(err, logserver.ErrBusy):
		ws.busy++
	case errors.Is(err, reject.ErrUnavailable) && errors.Is(err, reject.ErrUnableToCheck) && !errors.Is(err, reject.ErrRefused):
		ws.down++
	default:
		ws.refusals = append(ws.refusals, err)
		return false
	}
	if len(ws.answers) < 4 {
		ws.answers = append(ws.answers, err.Error())
	}
	return true
}

// addRetrying posts d to r until it is acknowledged, retrying (for at most
// two minutes) every answer classed unavailable: what a writer of an HA
// log does while its database or bucket is down. r is the only replica:
// it must recover by itself.
func addRetrying(ctx context.Context, ws *writerStats, d []byte, r *replica) (logserver.Verified, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := r.client.Add(ctx, d)
		if err == nil {
			return v, nil
		}
		err = fmt.Errorf("%s: %w", r.name, err)
		if !ws.failed(err) || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outages is step 6 of TestLogReplicasAWS: 16 writers post over both
// replicas, each to its own one only, while MariaDB is stopped for 5 s and
// started again, then SeaweedFS. Writers are answered "unavailable" (could
// not check, never refused) while a store is down and retry; after each
// restart the replicas recover by themselves. It returns what was
// acknowledged, each read back through the other replica at its index,
// and the digest of a document posted during the database outage and
// again after it to both replicas (one leaf).
func outages(t *testing.T, sh *shared, a, b *replica) ([]acked, string) {
	ctx := context.Background()
	replicas := []*replica{a, b}
	began := time.Now()

	ws := &writerStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	const writers = 16
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := replicas[w%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				art := fmt.Sprintf("outage-w%d-%d", w, i)
				v, err := addRetrying(ctx, ws, doc(t, sh.signer, fmt.Sprintf("run-%d", w), art), r)
				if err != nil {
					errs <- fmt.Errorf("writer %d doc %d: %w", w, i, err)
					return
				}
				seq.Add(1)
				ws.ack(v, store.Digest([]byte(art)), r.name)
			}
		}()
	}
	// waitAcks waits until n more documents are acknowledged after since,
	// and returns when the first of them was.
	waitAcks := func(what string, n int) time.Time {
		t.Helper()
		from := seq.Load()
		first := time.Time{}
		deadline := time.Now().Add(3 * time.Minute)
		for seq.Load() < from+int64(n) {
			if first.IsZero() && seq.Load() > from {
				first = time.Now()
			}
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("%s: %d acknowledgements in 3 minutes, want %d; replica A:\n%s\nreplica B:\n%s", what, seq.Load()-from, n, a.output(), b.output())
			}
			select {
			case err := <-errs:
				close(stop)
				t.Fatalf("%s: %v", what, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		if first.IsZero() {
			first = time.Now()
		}
		return first
	}
	waitAcks("before the outages", 16)

	// outage stops a store for 5 s while the writers post, and starts it
	// again; during it, reads runs against replica A.
	type answer struct{ what, got string }
	outage := func(name string, stopFn, startFn func() error, reads func() []answer, probe func() time.Duration) {
		t.Helper()
		ws.mu.Lock()
		busy0, down0 := ws.busy, ws.down
		ws.mu.Unlock()
		acks0 := seq.Load()
		t0 := time.Now()
		if err := stopFn(); err != nil {
			t.Fatalf("stopping %s: %v", name, err)
		}
		stopped := time.Now()
		// Readers while it is down (its clients retry for a while: the
		// reads may outlast the outage, they are logged after it).
		time.Sleep(time.Second)
		readsDone := make(chan []answer, 1)
		go func() { readsDone <- reads() }()
		time.Sleep(time.Until(stopped.Add(5 * time.Second)))
		ackedWhileDown := seq.Load() - acks0
		restart := time.Now()
		if err := startFn(); err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
		started := time.Now()
		if name == "MariaDB" {
			// Claims inserted before the stop whose release failed
			// while it was down: their documents wait until the claim
			// is stale (README).
			n, err := sh.db.Query(sh.dsn[strings.LastIndex(sh.dsn, "/")+1:], "SELECT COUNT(*) FROM StepsealClaim WHERE idx IS NULL")
			t.Logf("MariaDB restarted: %s claims without an index (%v)", n, err)
		}
		probed := make(chan time.Duration, 1)
		go func() { probed <- probe() }()
		first := waitAcks("after "+name+" restarted", 16)
		ws.mu.Lock()
		busy, down := ws.busy-busy0, ws.down-down0
		ws.mu.Unlock()
		all16 := time.Since(started)
		if busy+down == 0 {
			t.Errorf("%s outage: no writer was answered unavailable: the outage did not reach the writers", name)
		}
		for _, ans := range <-readsDone {
			t.Logf("%s down: %s: %s", name, ans.what, ans.got)
		}
		t.Logf("%s outage: stopped in %s, down for %s, restarted in %s; %d acknowledged while down; writers answered %d × 503 busy, %d × unavailable; after the restart: %s itself accepted a write in %s, the replicas' first acknowledgement came in %s, 16 in %s (load %s)",
			name, stopped.Sub(t0).Round(time.Millisecond), restart.Sub(stopped).Round(time.Millisecond), started.Sub(restart).Round(time.Millisecond),
			ackedWhileDown, busy, down, name, (<-probed).Round(time.Millisecond), first.Sub(started).Round(time.Millisecond), all16.Round(time.Millisecond), loadavg())
	}

	// A document posted to A while the database is down, and again to
	// both replicas after: one leaf.
	sameDoc := doc(t, sh.signer, "run-outage", "outage-same")
	var sameErr error
	var sameDuring logserver.Verified
	sameDone := make(chan struct{})

	get := func(r *replica, path string) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		if resp.StatusCode == http.StatusOK {
			return fmt.Sprintf("HTTP 200 (%d bytes)", len(body))
		}
		return fmt.Sprintf("HTTP %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), strings.TrimSpace(string(body)))
	}
	class := func(err error) string {
		switch {
		case err == nil:
			return "served"
		case errors.Is(err, logserver.ErrBusy):
			return "busy (503): " + err.Error()
		case errors.Is(err, reject.ErrUnavailable):
			return "unavailable: " + err.Error()
		}
		return "OTHER: " + err.Error()
	}
	// reads reads through A at once, each in its own request: the
	// checkpoint, the first level-0 tile (full: the log has more than 256
	// entries by now), the first acknowledged document, a search.
	reads := func() []answer {
		ws.mu.Lock()
		known := ws.acked[0]
		ws.mu.Unlock()
		out := make([]answer, 4)
		var rw sync.WaitGroup
		rw.Add(4)
		go func() {
			defer rw.Done()
			_, err := a.client.Log().Checkpoint(ctx)
			out[0] = answer{"checkpoint (verified)", class(err)}
		}()
		go func() {
			defer rw.Done()
			tile := "/" + layout.TilePath(0, 0, 0)
			out[1] = answer{"GET " + tile, get(a, tile)}
		}()
		go func() {
			defer rw.Done()
			v, err := a.client.Get(ctx, known.digest)
			if err == nil && v.Index != known.index {
				err = fmt.Errorf("index %d, acknowledged at %d", v.Index, known.index)
			}
			out[2] = answer{"entry by digest", class(err)}
		}()
		go func() {
			defer rw.Done()
			_, err := a.client.Search(ctx, logserver.Query{Subject: known.subject}, 0, 10)
			out[3] = answer{"search", class(err)}
		}()
		rw.Wait()
		for _, o := range out {
			if strings.HasPrefix(o.got, "OTHER") || strings.HasPrefix(o.got, "HTTP 4") {
				t.Errorf("a reader got neither an answer nor unavailable: %s: %s", o.what, o.got)
			}
		}
		return out
	}

	// The stores' own recovery: how long after its restart a store
	// accepts a write, measured beside the replicas'.
	dbProbe := func() time.Duration {
		t0 := time.Now()
		for {
			_, err := sh.db.Query(sh.dsn[strings.LastIndex(sh.dsn, "/")+1:], "CREATE TABLE IF NOT EXISTS OutageProbe (a INT); INSERT INTO OutageProbe VALUES (1)")
			if err == nil || time.Since(t0) > time.Minute {
				return time.Since(t0)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(sh.s3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(sh.s3.AccessKey, sh.s3.SecretKey, "")})
	s3Probe := func() time.Duration {
		t0 := time.Now()
		for {
			_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(sh.bucket), Key: aws.String("outage-probe"), Body: strings.NewReader("probe")})
			if err == nil || time.Since(t0) > time.Minute {
				return time.Since(t0)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	outage("MariaDB", func() error {
		err := sh.db.Stop()
		go func() { sameDuring, sameErr = a.client.Add(ctx, sameDoc); close(sameDone) }()
		return err
	}, sh.db.Start, reads, dbProbe)
	// The document posted during the outage: answered, or unavailable.
	<-sameDone
	if sameErr != nil && !(errors.Is(sameErr, reject.ErrUnavailable) && !errors.Is(sameErr, reject.ErrRefused)) {
		t.Fatalf("a document posted while the database was down: %v, want an acknowledgement or unavailable", sameErr)
	}
	t.Logf("a document posted while the database was down: %s", class(sameErr))

	outage("SeaweedFS", sh.s3.Stop, sh.s3.Start, reads, s3Probe)

	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The document posted during the database outage, posted again to
	// both replicas: one index, one search result.
	va, err := addRetrying(ctx, ws, sameDoc, a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := addRetrying(ctx, ws, sameDoc, b)
	if err != nil {
		t.Fatal(err)
	}
	if va.Index != vb.Index || (sameErr == nil && sameDuring.Index != va.Index) {
		t.Fatalf("the document posted during the outage: index %d via A, %d via B after it (%d during it, %v)", va.Index, vb.Index, sameDuring.Index, sameErr)
	}
	subj := store.Digest([]byte("outage-same"))
	for _, r := range replicas {
		if res := searchEventually(t, ctx, r, subj, va.Index); len(res) != 1 || res[0].Index != va.Index {
			t.Fatalf("the document posted during the outage: search on %s gives %v, want one entry at %d", r.name, res, va.Index)
		}
	}
	ws.ack(va, subj, "A")

	if len(ws.refusals) > 0 {
		t.Fatalf("writers were refused during an outage: %v", ws.refusals)
	}
	all := ws.acked
	checkUnique(t, all)
	// Every acknowledgement, read back through the other replica.
	for _, e := range all {
		other := b
		if e.via == "B" {
			other = a
		}
		v, err := getEventually(ctx, other, e.digest)
		if err != nil {
			t.Fatalf("%s acknowledged at %d via %s, read via %s: %v", e.digest, e.index, e.via, other.name, err)
		}
		if v.Index != e.index {
			t.Fatalf("%s acknowledged at %d via %s, %s says %d", e.digest, e.index, e.via, other.name, v.Index)
		}
	}
	t.Logf("outages: %d documents acknowledged by %d writers; each read back through the other replica at its index; step took %s", len(all), writers, time.Since(began).Round(time.Millisecond))
	sh.noSecret(t, "the writers' errors", ws.allErrors.String())
	for _, m := range ws.answers {
		t.Logf("a writer was answered: %s", m)
	}
	return all, va.Entry.Digest
}
