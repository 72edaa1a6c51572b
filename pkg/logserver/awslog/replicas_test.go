package awslog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stepseal/stepseal/internal/mysqltest"
	"github.com/stepseal/stepseal/internal/s3test"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/awslog"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// shared is one MariaDB database and one SeaweedFS bucket, and the files
// every replica is given: the log key (the same for all), the writers'
// public key and the DSN.
type shared struct {
	db      *mysqltest.Server
	s3      *s3test.Server
	dsn     string
	bucket  string
	bin     string // directory of stepseal and stepseal-tekton
	base    string // the replicas' files
	dsnFile string
	allow   string
	signer  signing.Signer
	key     tlog.Key
}

// buildBinaries builds stepseal and stepseal-tekton side by side, as make
// build does: the lean stepseal hands `log serve --storage aws` over.
func buildBinaries(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	dir := t.TempDir()
	b := exec.Command("go", "build", "-o", dir+"/", "./images/stepseal", "./images/stepseal-tekton")
	b.Dir = repo
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("building stepseal: %v\n%s", err, out)
	}
	return dir
}

func newShared(t *testing.T) *shared {
	t.Helper()
	sh := &shared{db: mysqltest.Start(t), s3: s3test.Start(t), bucket: "stepseal-log", base: t.TempDir()}
	sh.dsn = sh.db.NewDatabase(t)
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(sh.s3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(sh.s3.AccessKey, sh.s3.SecretKey, "")})
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(sh.bucket)}); err != nil {
		t.Fatal(err)
	}
	sh.dsnFile = filepath.Join(sh.base, "dsn")
	if err := os.WriteFile(sh.dsnFile, []byte(sh.dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sh.signer = signingtest.SignerOf(t, signing.ED25519)
	pem, err := signing.MarshalPublicKeyPEM(sh.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	sh.allow = filepath.Join(sh.base, "writer.pub")
	if err := os.WriteFile(sh.allow, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	keyDir := filepath.Join(sh.base, "key")
	if sh.key, err = tlog.WriteKeyFiles(filepath.Join(keyDir, "log.key"), filepath.Join(keyDir, "log.pub"), "log.stepseal.test/replicas"); err != nil {
		t.Fatal(err)
	}
	sh.bin = buildBinaries(t)
	return sh
}

// replica is one `stepseal log serve --storage aws` process.
type replica struct {
	name, dir, url string
	cmd            *exec.Cmd
	stderr         *strings.Builder
	mu             sync.Mutex
	client         *logserver.Client
}

// dirFor is a replica's own DIR holding a copy of the shared log key.
func (sh *shared) dirFor(t *testing.T, name string, key tlog.Key) string {
	t.Helper()
	dir := filepath.Join(sh.base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"log.key", "log.pub"} {
		b, err := os.ReadFile(filepath.Join(sh.base, "key", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start starts a replica serving from dir (its index) on the shared log,
// through the lean stepseal binary, and waits until it serves.
func (sh *shared) start(t *testing.T, name, dir string) (*replica, error) {
	t.Helper()
	return sh.startArgs(t, name, dir, "--storage", "aws", "--mysql-dsn-file", sh.dsnFile,
		"--s3-bucket", sh.bucket, "--s3-endpoint", sh.s3.Endpoint, "--s3-path-style", "--batch-max-age", "50ms")
}

// startArgs starts `stepseal log serve DIR ARGS...` and waits until it
// serves.
func (sh *shared) startArgs(t *testing.T, name, dir string, args ...string) (*replica, error) {
	t.Helper()
	r := &replica{name: name, dir: dir, stderr: &strings.Builder{}}
	r.cmd = exec.Command(filepath.Join(sh.bin, "stepseal"), append([]string{"log", "serve", dir, "--allow", sh.allow, "--addr", "127.0.0.1:0"}, args...)...)
	r.cmd.Env = append(os.Environ(), sh.s3.Env()...)
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	serving := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := sc.Text()
			r.mu.Lock()
			r.stderr.WriteString(l + "\n")
			r.mu.Unlock()
			if strings.HasPrefix(l, "serving") {
				_, rest, _ := strings.Cut(l, " at ")
				u, _, _ := strings.Cut(rest, ";")
				serving <- u
			}
		}
	}()
	select {
	case r.url = <-serving:
	case <-done:
		r.cmd.Wait()
		return r, fmt.Errorf("replica %s exited: %s", name, r.output())
	case <-time.After(2 * time.Minute):
		return r, fmt.Errorf("replica %s did not start: %s", name, r.output())
	}
	if r.client, err = logserver.NewClient(r.url, sh.key.Verifier, &http.Client{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return r, nil
}

func (r *replica) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// doc is a signed SLSA provenance envelope about one artifact, in run.
func doc(t testing.TB, s signing.Signer, run, artifact string) []byte {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject": []map[string]any{{"name": artifact,
			"digest": map[string]string{"sha256": strings.TrimPrefix(store.Digest([]byte(artifact)), "sha256:")}}},
		"predicate": map[string]any{"runDetails": map[string]any{"metadata": map[string]any{"invocationId": run}}},
	})
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	return b
}

// acked is an acknowledged append: the document's digest, subject and the
// index the answer gave.
type acked struct {
	digest, subject string
	index           uint64
	via             string
}

// add posts d to r, retrying pushback (503) and, when r is gone, the
// other replica: a client of an HA log does the same.
func add(ctx context.Context, d []byte, rs ...*replica) (logserver.Verified, string, error) {
	var last error
	for attempt := 0; attempt < 200; attempt++ {
		r := rs[attempt%len(rs)]
		v, err := r.client.Add(ctx, d)
		if err == nil {
			return v, r.name, nil
		}
		last = fmt.Errorf("%s: %w", r.name, err)
		if ctx.Err() != nil {
			break
		}
		if !errors.Is(err, logserver.ErrBusy) && len(rs) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return logserver.Verified{}, "", last
}

// TestLogReplicasAWS is case 21 of the attestation store: two `stepseal
// log serve` replicas on Tessera's AWS driver, sharing one MariaDB database
// and one SeaweedFS bucket, and nothing else.
func TestLogReplicasAWS(t *testing.T) {
	ctx := context.Background()
	sh := newShared(t)
	a, err := sh.start(t, "A", sh.dirFor(t, "a", sh.key))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sh.start(t, "B", sh.dirFor(t, "b", sh.key))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{a, b} {
		sh.noSecret(t, "replica "+r.name+"'s output", r.output())
		if !strings.Contains(r.output(), "S3 bucket "+sh.bucket) {
			t.Errorf("replica %s does not say where its log is:\n%s", r.name, r.output())
		}
	}

	var mu sync.Mutex
	var all []acked
	record := func(v logserver.Verified, subj, via string) {
		mu.Lock()
		all = append(all, acked{digest: v.Entry.Digest, subject: subj, index: v.Index, via: via})
		mu.Unlock()
	}

	// 1. 16 writers, spread over both replicas, append N documents.
	const writers, perWriter = 16, 20
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := []*replica{a, b}[w%2]
			for i := range perWriter {
				art := fmt.Sprintf("burst1-w%d-%d", w, i)
				v, via, err := add(ctx, doc(t, sh.signer, fmt.Sprintf("run-%d", w), art), r)
				if err != nil {
					errs <- fmt.Errorf("writer %d doc %d: %w", w, i, err)
					return
				}
				record(v, store.Digest([]byte(art)), via)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("burst 1: %d documents by %d writers over 2 replicas in %s (%.0f appends/s; load %s)", writers*perWriter, writers, el.Round(time.Millisecond), float64(writers*perWriter)/el.Seconds(), loadavg())
	checkUnique(t, all)

	// 1a. Fail closed: a replica with another log key, a bucket that is
	// not there, a database refusing the password.
	refusals(t, sh)

	// 2. Every answer verifies against the shared checkpoint from either
	// replica: each document read back through the other one.
	cpA, err := a.client.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cpB, err := b.client.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cpA.Size < uint64(len(all)) || cpB.Size < uint64(len(all)) {
		t.Fatalf("checkpoints of %d (A) and %d (B) entries, %d acknowledged", cpA.Size, cpB.Size, len(all))
	}
	for _, e := range all {
		other := b
		if e.via == "B" {
			other = a
		}
		v, err := getEventually(ctx, other, e.digest)
		if err != nil {
			t.Fatalf("%s added via %s, read via %s: %v", e.digest, e.via, other.name, err)
		}
		if v.Index != e.index {
			t.Fatalf("%s: index %d via %s, %d via %s", e.digest, e.index, e.via, v.Index, other.name)
		}
	}

	// 3. The same envelope posted to both replicas at once: one entry, the
	// same index in both answers.
	same := map[string]bool{}
	for i := range 8 {
		d := doc(t, sh.signer, "run-same", fmt.Sprintf("same-%d", i))
		var va, vb logserver.Verified
		var ea, eb error
		var w2 sync.WaitGroup
		w2.Add(2)
		go func() { defer w2.Done(); va, ea = a.client.Add(ctx, d) }()
		go func() { defer w2.Done(); vb, eb = b.client.Add(ctx, d) }()
		w2.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("same document %d: A %v, B %v", i, ea, eb)
		}
		if va.Index != vb.Index || va.Entry.Digest != vb.Entry.Digest {
			t.Fatalf("same document %d: index %d via A, %d via B", i, va.Index, vb.Index)
		}
		subj := store.Digest([]byte(fmt.Sprintf("same-%d", i)))
		for _, r := range []*replica{a, b} {
			res := searchAll(t, ctx, r, subj, 1)
			if len(res) != 1 || res[0].Index != va.Index {
				t.Fatalf("same document %d: search on %s gives %v, want one entry at %d", i, r.name, res, va.Index)
			}
		}
		record(va, subj, "A")
		same[va.Entry.Digest] = true
	}

	// 4. kill -9 of one replica in the middle of a burst: the other
	// keeps serving, and every acknowledged (digest, index) is in the log
	// exactly once.
	var n atomic.Int64
	killed := make(chan struct{})
	go func() {
		for n.Load() < 60 {
			time.Sleep(5 * time.Millisecond)
		}
		a.cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
	}()
	errs = make(chan error, writers)
	var failedOnA atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := []*replica{a, b}
			if w%2 == 1 {
				rs = []*replica{b, a}
			}
			for i := range perWriter {
				art := fmt.Sprintf("burst2-w%d-%d", w, i)
				v, via, err := add(ctx, doc(t, sh.signer, fmt.Sprintf("run-%d", w), art), rs...)
				if err != nil {
					errs <- fmt.Errorf("writer %d doc %d: %w", w, i, err)
					return
				}
				if via != rs[0].name {
					failedOnA.Add(1)
				}
				n.Add(1)
				record(v, store.Digest([]byte(art)), via)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	<-killed
	t.Logf("burst 2: A killed (SIGKILL) after 60 acknowledgements; %d appends answered by the other replica after a failure; %d acknowledged in all", failedOnA.Load(), len(all))
	checkUnique(t, all)
	for _, e := range all {
		v, err := getEventually(ctx, b, e.digest)
		if err != nil {
			t.Fatalf("%s (acknowledged at %d via %s) via B after A's kill: %v", e.digest, e.index, e.via, err)
		}
		if v.Index != e.index {
			t.Fatalf("%s acknowledged at %d via %s, B says %d", e.digest, e.index, e.via, v.Index)
		}
	}

	// 5. A restarts on its own DIR (its index as the kill left it) and
	// catches up; a search by subject on either replica finds every
	// acknowledged document exactly once, at its index.
	a2, err := sh.start(t, "A", a.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{a2, b} {
		for _, e := range all {
			res := searchEventually(t, ctx, r, e.subject, e.index)
			if len(res) != 1 || res[0].Index != e.index || res[0].Entry.Digest != e.digest {
				t.Fatalf("search for %s on %s: %v, want %s at %d", e.subject, r.name, res, e.digest, e.index)
			}
		}
	}

	// 6. The database, then the bucket, stopped for 5 s and started
	// again under a burst of writers (outage_test.go).
	got, sameDigest := outages(t, sh, a2, b)
	all = append(all, got...)
	same[sameDigest] = true
	checkUnique(t, all)

	// 7. stepseal log audit rebuilds the index from the log through
	// either replica and agrees with both replicas' searches.
	for _, r := range []*replica{a2, b} {
		sh.audit(t, r, all, same)
		sh.noSecret(t, "replica "+r.name+"'s output", r.output())
	}
}

// noSecret fails if text, what a replica or a writer was told, holds the
// database password or the S3 secret key.
func (sh *shared) noSecret(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, sh.db.Password) || strings.Contains(text, sh.s3.SecretKey) {
		t.Fatalf("%s holds a secret:\n%s", what, text)
	}
}

// audit runs stepseal log audit through r: it rebuilds the index from the
// log and agrees with r's searches; every leaf is an acknowledged document
// of all or a repeat of one, and none of the documents in same is
// repeated.
func (sh *shared) audit(t *testing.T, r *replica, all []acked, same map[string]bool) {
	t.Helper()
	out, err := exec.Command(filepath.Join(sh.bin, "stepseal"), "-o", "json", "log", "audit", "--server", r.url,
		"--log-key", filepath.Join(sh.base, "key", "log.pub"), "--index", filepath.Join(t.TempDir(), "audit.db")).CombinedOutput()
	if err != nil {
		t.Fatalf("log audit via %s: %v\n%s", r.name, err, out)
	}
	var rep struct {
		TreeSize uint64            `json:"treeSize"`
		Entries  uint64            `json:"entriesVerified"`
		Results  int               `json:"resultsCompared"`
		Aliases  map[string]string `json:"aliases"`
		OK       bool              `json:"ok"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || !rep.OK || rep.Entries != rep.TreeSize || rep.TreeSize < uint64(len(all)) {
		t.Fatalf("log audit via %s: %v\n%s", r.name, err, out)
	}
	// The documents posted to both replicas at once are one leaf
	// each: the replicas' claims decided which one appended.
	for i, d := range rep.Aliases {
		if same[d] {
			t.Errorf("log audit via %s: %s, posted to both replicas at once, is also log entry %s", r.name, d, i)
		}
	}
	// Every leaf is an acknowledged document or a repeat of one
	// (an alias: a document two replicas appended at once, or
	// one whose first writer was killed before answering).
	if got := rep.TreeSize - uint64(len(rep.Aliases)); got != uint64(len(distinct(all))) {
		t.Fatalf("log audit via %s: %d entries, %d aliases: %d documents, %d acknowledged", r.name, rep.TreeSize, len(rep.Aliases), got, len(distinct(all)))
	}
	t.Logf("log audit via %s: PASS, %d entries verified (%d repeats of a document, resolved to its first entry), %d search results compared", r.name, rep.Entries, len(rep.Aliases), rep.Results)
}

// distinct is the acknowledged documents of all, each once.
func distinct(all []acked) map[string]bool {
	m := map[string]bool{}
	for _, e := range all {
		m[e.digest] = true
	}
	return m
}

// checkUnique fails if two acknowledged documents share an index or one
// document got two indexes.
func checkUnique(t *testing.T, all []acked) {
	t.Helper()
	byIndex, byDigest := map[uint64]string{}, map[string]uint64{}
	for _, e := range all {
		if d, ok := byIndex[e.index]; ok && d != e.digest {
			t.Fatalf("index %d acknowledged for %s and %s", e.index, d, e.digest)
		}
		if i, ok := byDigest[e.digest]; ok && i != e.index {
			t.Fatalf("%s acknowledged at %d and %d", e.digest, i, e.index)
		}
		byIndex[e.index], byDigest[e.digest] = e.digest, e.index
	}
}

// getEventually reads digest through r: an entry another replica
// appended reaches r's index within its follower's round (about 1 s).
func getEventually(ctx context.Context, r *replica, digest string) (logserver.Verified, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := r.client.Get(ctx, digest)
		if err == nil || !errors.Is(err, logserver.ErrNotFound) || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func searchAll(t *testing.T, ctx context.Context, r *replica, subject string, limit int) []logserver.VerifiedResult {
	t.Helper()
	var out []logserver.VerifiedResult
	var from uint64
	for {
		p, err := r.client.Search(ctx, logserver.Query{Subject: subject}, from, max(limit, 10))
		if err != nil {
			t.Fatalf("search %s on %s: %v", subject, r.name, err)
		}
		out = append(out, p.Results...)
		if !p.More {
			return out
		}
		from = p.Next
	}
}

// searchEventually searches until r's index covers index.
func searchEventually(t *testing.T, ctx context.Context, r *replica, subject string, index uint64) []logserver.VerifiedResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := searchAll(t, ctx, r, subject, 10)
		if len(res) > 0 || time.Now().After(deadline) {
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// refusals: what a misconfigured replica gets, in process, with the
// exact typed errors, and no secret in any message.
func refusals(t *testing.T, sh *shared) {
	t.Helper()
	ctx := context.Background()
	for _, kv := range sh.s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg := logserver.AWSConfig{DSN: sh.dsn, Bucket: sh.bucket, Endpoint: sh.s3.Endpoint, PathStyle: true}
	allow := logserver.Keys{signingtest.Verifier(t, sh.signer)}

	// Another key under the same origin: the shared checkpoint does not
	// verify, nothing is signed on top of it.
	skey, _, err := tlog.GenerateKey(sh.key.Verifier.Name())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := awslog.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if srv, err := logserver.Open(ctx, t.TempDir(), other, logserver.Options{Keys: allow, Storage: st}); !errors.Is(err, tlog.ErrBadCheckpoint) {
		if srv != nil {
			srv.Close(ctx)
		}
		t.Fatalf("a replica with another log key: %v, want tlog.ErrBadCheckpoint", err)
	}

	// A bucket that does not exist: unavailable, not a verdict.
	bad := cfg
	bad.Bucket = "no-such-bucket"
	if _, err := awslog.Open(ctx, bad); !errors.Is(err, logserver.ErrUnavailable) || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("missing bucket: %v, want logserver.ErrUnavailable naming it", err)
	}

	// A wrong password: the replica does not start, and the message
	// holds neither password.
	bad = cfg
	bad.DSN = strings.Replace(sh.dsn, sh.db.Password, "wrong-"+sh.db.Password, 1)
	st, err = awslog.Open(ctx, bad)
	if err == nil {
		var srv *logserver.Server
		srv, err = logserver.Open(ctx, t.TempDir(), sh.key, logserver.Options{Keys: allow, Storage: st})
		if err == nil {
			srv.Close(ctx)
			t.Fatal("a replica with a wrong database password started")
		}
	}
	t.Logf("wrong database password: %v", bad.ScrubError(err))
	if strings.Contains(bad.ScrubError(err).Error(), sh.db.Password) || !errors.Is(err, logserver.ErrUnavailable) && !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("wrong password: %v", bad.ScrubError(err))
	}
}
