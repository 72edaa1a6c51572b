package rekor_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/rekor/rekortest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// statement is an in-toto v1 statement with a SLSA v1 provenance predicate
// about an artifact of content blob.
func statement(t *testing.T, blob []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(blob)
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "blob.txt", "digest": map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/buildtypes/test/v1", "externalParameters": map[string]any{"n": string(blob)}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://stepseal.dev/test"}},
		},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signed(t *testing.T, s signing.Signer, blob []byte) *dsse.Envelope {
	t.Helper()
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, statement(t, blob), s)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func subject(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func publisher(t *testing.T, l rekor.Log) *rekor.Publisher {
	t.Helper()
	p, err := rekor.NewPublisher(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cosign finds the cosign CLI (v2.6.5, hack/install-test-deps.sh); absent,
// the test fails in CI and is skipped elsewhere.
func cosign(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("cosign not installed: hack/install-test-deps.sh installs it")
	}
	t.Skip("cosign not installed (run make deps)")
	return ""
}

// cosignVerify runs cosign verify-blob-attestation on bundle for blob with
// the signer's key and the trusted root, HOME in a temp dir (no sigstore
// cache of the user's, no network).
func cosignVerify(t *testing.T, dir string, bundle []byte, blob []byte, pubPEM, trustedRoot string) (string, error) {
	t.Helper()
	bin := cosign(t)
	bf := filepath.Join(dir, "x"+rekor.FileSuffix)
	af := filepath.Join(dir, "blob.txt")
	if err := os.WriteFile(bf, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(af, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "verify-blob-attestation", "--bundle", bf, "--new-bundle-format",
		"--trusted-root", trustedRoot, "--key", pubPEM, "--type", "slsaprovenance1", af)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TUF_ROOT=" + filepath.Join(dir, ".sigstore")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// files writes the signer's public key and a trusted root of logs into a
// new directory.
func files(t *testing.T, s signing.Signer, logs ...rekor.Log) (dir, pubPEM, trustedRoot string) {
	t.Helper()
	dir = t.TempDir()
	pem, err := signing.MarshalPublicKeyPEM(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM = filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(pubPEM, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := rekor.TrustedRoot(time.Now().Add(-time.Hour), logs...)
	if err != nil {
		t.Fatal(err)
	}
	trustedRoot = filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(trustedRoot, tr, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pubPEM, trustedRoot
}

// edit returns bundle b changed by f.
func edit(t *testing.T, b []byte, f func(*protobundle.Bundle)) []byte {
	t.Helper()
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(b, &pb); err != nil {
		t.Fatal(err)
	}
	f(&pb)
	out, err := protojson.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPublishCosignVerifiesAndTamperingIsRejected: a provenance signed with
// an ECDSA P-256 key is logged in a real rekor-server-posix; cosign
// verify-blob-attestation (--new-bundle-format, our trusted_root.json,
// --key) accepts the bundle and so does Verify. Every tampered bundle is
// rejected by cosign and by Verify with the exact typed error.
func TestPublishCosignVerifiesAndTamperingIsRejected(t *testing.T) {
	ctx := context.Background()
	srv := rekortest.Start(t, "")
	s := signingtest.Signer(t)
	blob := []byte("hello rekor v2\n")
	p := publisher(t, srv.Log)

	pubd, err := p.Publish(ctx, signed(t, s, blob), s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if pubd.Duplicate || pubd.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("published %+v", pubd)
	}
	// A second entry, whose proof is swapped in below.
	other, err := p.Publish(ctx, signed(t, s, []byte("another artifact\n")), s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if other.LogIndex == pubd.LogIndex {
		t.Fatalf("two entries at index %d", other.LogIndex)
	}
	// The same envelope in another log of the same origin (another key):
	// its checkpoint is "a checkpoint from another log".
	foreign := rekortest.Start(t, srv.Log.Origin)
	fpub, err := publisher(t, foreign.Log).Publish(ctx, signed(t, s, blob), s.Public())
	if err != nil {
		t.Fatal(err)
	}

	dir, pubPEM, trustedRoot := files(t, s, srv.Log)
	opts := rekor.VerifyOptions{Key: s.Public(), Logs: []rekor.Log{srv.Log}, Subject: subject(blob)}
	out, err := cosignVerify(t, dir, pubd.Bundle, blob, pubPEM, trustedRoot)
	if err != nil || !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign refused our bundle: %v\n%s\n%s", err, out, pubd.Bundle)
	}
	v, err := rekor.Verify(pubd.Bundle, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v.LogIndex != pubd.LogIndex || v.Log.Origin != "rekor.local" {
		t.Fatalf("verified %+v", v)
	}

	tle := func(b *protobundle.Bundle) *protobundle.VerificationMaterial { return b.VerificationMaterial }
	otherTLE := func() *protobundle.Bundle {
		var ob protobundle.Bundle
		if err := protojson.Unmarshal(other.Bundle, &ob); err != nil {
			t.Fatal(err)
		}
		return &ob
	}()
	foreignTLE := func() *protobundle.Bundle {
		var fb protobundle.Bundle
		if err := protojson.Unmarshal(fpub.Bundle, &fb); err != nil {
			t.Fatal(err)
		}
		return &fb
	}()
	for _, c := range []struct {
		name   string
		bundle []byte
		blob   []byte
		want   error
		reason *reject.Reason
	}{
		{"payload changed", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			b.GetDsseEnvelope().Payload = statement(t, []byte("hello rekor v3\n"))
		}), []byte("hello rekor v3\n"), rekor.ErrSignature, reject.ErrSignature},
		{"signature changed", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			b.GetDsseEnvelope().Signatures[0].Sig = append([]byte(nil), otherTLE.GetDsseEnvelope().Signatures[0].Sig...)
		}), blob, rekor.ErrSignature, reject.ErrSignature},
		{"inclusion proof swapped", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			e := tle(b).TlogEntries[0]
			e.InclusionProof = otherTLE.VerificationMaterial.TlogEntries[0].InclusionProof
			e.LogIndex = e.InclusionProof.LogIndex
		}), blob, rekor.ErrInclusion, reject.ErrMismatch},
		{"checkpoint from another log", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			tle(b).TlogEntries[0].InclusionProof.Checkpoint = foreignTLE.VerificationMaterial.TlogEntries[0].InclusionProof.Checkpoint
		}), blob, rekor.ErrCheckpoint, reject.ErrSignature},
		{"checkpoint root replaced", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			cp := tle(b).TlogEntries[0].InclusionProof.Checkpoint
			lines := strings.SplitN(cp.Envelope, "\n", 4)
			lines[2] = base64.StdEncoding.EncodeToString(make([]byte, 32))
			cp.Envelope = strings.Join(lines, "\n")
		}), blob, rekor.ErrCheckpoint, reject.ErrSignature},
		{"index beyond the tree", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			e := tle(b).TlogEntries[0]
			e.LogIndex, e.InclusionProof.LogIndex = 1000, 1000
		}), blob, rekor.ErrInclusion, reject.ErrMismatch},
		{"tlog entry removed", edit(t, pubd.Bundle, func(b *protobundle.Bundle) {
			tle(b).TlogEntries = nil
		}), blob, rekor.ErrNoEntry, reject.ErrMissing},
		{"entry of an untrusted log", fpub.Bundle, blob, rekor.ErrUnknownLog, reject.ErrUnauthorized},
		{"another artifact", pubd.Bundle, []byte("not the artifact\n"), rekor.ErrSubject, reject.ErrMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := opts
			o.Subject = subject(c.blob)
			_, err := rekor.Verify(c.bundle, o)
			if !errors.Is(err, c.want) || !errors.Is(err, c.reason) || !errors.Is(err, reject.ErrRefused) {
				t.Fatalf("Verify: %v, want %v (%v)", err, c.want, c.reason)
			}
			t.Logf("Verify: %v", err)
			out, cerr := cosignVerify(t, t.TempDir(), c.bundle, c.blob, pubPEM, trustedRoot)
			if cerr == nil || strings.Contains(out, "Verified OK") {
				t.Fatalf("cosign accepted the %s bundle:\n%s", c.name, out)
			}
			t.Logf("cosign: %s", lastLine(out))
		})
	}
	// The trusted root names the log's key under another host: the log ID
	// (the note key hash of origin and key) is not the bundle's, and the
	// checkpoints' origin is not that host.
	t.Run("trusted root on another host", func(t *testing.T) {
		moved := srv.Log
		moved.Origin = "rekor.elsewhere"
		_, pubPEM, movedRoot := files(t, s, moved)
		o := opts
		o.Logs = []rekor.Log{moved}
		_, err := rekor.Verify(pubd.Bundle, o)
		if !errors.Is(err, rekor.ErrUnknownLog) || !errors.Is(err, reject.ErrUnauthorized) {
			t.Fatalf("Verify: %v, want rekor.ErrUnknownLog", err)
		}
		t.Logf("Verify: %v", err)
		out, cerr := cosignVerify(t, t.TempDir(), pubd.Bundle, blob, pubPEM, movedRoot)
		if cerr == nil || strings.Contains(out, "Verified OK") {
			t.Fatalf("cosign accepted the bundle under another host:\n%s", out)
		}
		t.Logf("cosign: %s", lastLine(out))
	})
}

// lastLine is cosign's "Error:" line, else its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "Error:") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// TestDuplicateBecomesBundleOfExistingEntry: the same envelope published
// again gets Rekor's 409; the publisher reads the existing entry from the
// log's tiles and returns a bundle of it, which Verify and cosign accept.
func TestDuplicateBecomesBundleOfExistingEntry(t *testing.T) {
	ctx := context.Background()
	srv := rekortest.Start(t, "")
	s := signingtest.Signer(t)
	blob := []byte("built once\n")
	env := signed(t, s, blob)
	p := publisher(t, srv.Log)
	first, err := p.Publish(ctx, env, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	// Another entry after it, so the duplicate's proof is against a newer
	// checkpoint than the first answer's.
	if _, err := p.Publish(ctx, signed(t, s, []byte("later\n")), s.Public()); err != nil {
		t.Fatal(err)
	}
	again, err := p.Publish(ctx, env, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.LogIndex != first.LogIndex {
		t.Fatalf("again: duplicate=%v index %d, want the existing index %d", again.Duplicate, again.LogIndex, first.LogIndex)
	}
	if _, err := rekor.Verify(again.Bundle, rekor.VerifyOptions{Key: s.Public(), Logs: []rekor.Log{srv.Log}, Subject: subject(blob)}); err != nil {
		t.Fatal(err)
	}
	dir, pubPEM, trustedRoot := files(t, s, srv.Log)
	if out, err := cosignVerify(t, dir, again.Bundle, blob, pubPEM, trustedRoot); err != nil {
		t.Fatalf("cosign refused the duplicate's bundle: %v\n%s", err, out)
	}
}

// TestDuplicateOfAnotherEntryIsRefused: a log (here a writer in front of
// the real log's tiles) that answers "duplicate of entry 0" for an entry
// it never logged gets ErrEntry, naming the index: no bundle is made.
func TestDuplicateOfAnotherEntryIsRefused(t *testing.T) {
	ctx := context.Background()
	srv := rekortest.Start(t, "")
	s := signingtest.Signer(t)
	if _, err := publisher(t, srv.Log).Publish(ctx, signed(t, s, []byte("entry zero\n")), s.Public()); err != nil {
		t.Fatal(err)
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"code":6,"message":"an equivalent entry already exists in the transparency log with index 0"}`))
	}))
	defer liar.Close()
	l := srv.Log
	l.URL = liar.URL
	_, err := publisher(t, l).Publish(ctx, signed(t, s, []byte("never logged\n")), s.Public())
	if !errors.Is(err, rekor.ErrEntry) || !strings.Contains(err.Error(), "entry 0") {
		t.Fatalf("got %v, want ErrEntry naming entry 0", err)
	}
}

// TestKeysRekorCannotLogAreRefusedUpFront: pure Ed25519 and RSA-PSS keys
// get ErrKeyNotLoggable naming the key, and the log is never contacted.
func TestKeysRekorCannotLogAreRefusedUpFront(t *testing.T) {
	var calls atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer fake.Close()
	logKey := signingtest.SignerOf(t, signing.ED25519)
	l := rekor.Log{URL: fake.URL, Origin: "rekor.local", PublicKey: logKey.Public()}
	for _, kt := range []signing.KeyType{signing.ED25519, signing.RSA} {
		s := signingtest.SignerOf(t, kt)
		_, err := publisher(t, l).Publish(context.Background(), signed(t, s, []byte("x")), s.Public())
		id, _ := s.KeyID()
		if !errors.Is(err, rekor.ErrKeyNotLoggable) || !errors.Is(err, reject.ErrUnsupported) || !strings.Contains(err.Error(), id[:8]) {
			t.Fatalf("%s: got %v, want ErrKeyNotLoggable naming %s", kt, err, id[:8])
		}
		t.Logf("%s: %v", kt, err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the log was contacted %d times", n)
	}
}

// TestLogAnswers: a refusal (400) is ErrLogRefused, a server error and an
// unreachable log are ErrUnavailable ("could not check"); an envelope not
// signed by the key (ErrSignature) or of no in-toto statement (ErrBundle)
// is refused before any request.
func TestLogAnswers(t *testing.T) {
	ctx := context.Background()
	s := signingtest.Signer(t)
	logKey := signingtest.SignerOf(t, signing.ED25519)
	for _, c := range []struct {
		code int
		want error
	}{
		{http.StatusBadRequest, rekor.ErrLogRefused},
		{http.StatusInternalServerError, rekor.ErrUnavailable},
		{http.StatusServiceUnavailable, rekor.ErrUnavailable},
	} {
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(c.code)
			_, _ = w.Write([]byte(`{"code":3,"message":"no"}`))
		}))
		l := rekor.Log{URL: fake.URL, Origin: "rekor.local", PublicKey: logKey.Public()}
		_, err := publisher(t, l).Publish(ctx, signed(t, s, []byte("x")), s.Public())
		fake.Close()
		if !errors.Is(err, c.want) {
			t.Fatalf("%d: got %v, want %v", c.code, err, c.want)
		}
	}
	fake := httptest.NewServer(http.NotFoundHandler())
	fake.Close()
	l := rekor.Log{URL: fake.URL, Origin: "rekor.local", PublicKey: logKey.Public()}
	if _, err := publisher(t, l).Publish(ctx, signed(t, s, []byte("x")), s.Public()); !errors.Is(err, rekor.ErrUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) {
		t.Fatalf("unreachable: got %v", err)
	}
	other := signingtest.Signer(t)
	if _, err := publisher(t, l).Publish(ctx, signed(t, other, []byte("x")), s.Public()); !errors.Is(err, rekor.ErrSignature) {
		t.Fatalf("envelope of another key: got %v", err)
	}
	notStatement, err := signing.SignEnvelope(ctx, "text/plain", []byte("x"), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publisher(t, l).Publish(ctx, notStatement, s.Public()); !errors.Is(err, rekor.ErrBundle) {
		t.Fatalf("envelope of no in-toto statement: got %v", err)
	}
}

// TestLogOrigin: an origin verifiers could never match (a port, a path, a
// scheme) is refused when the publisher is made.
func TestLogOrigin(t *testing.T) {
	k := signingtest.SignerOf(t, signing.ED25519)
	for _, o := range []string{"", "rekor.local:3000", "https://rekor.local", "rekor.local/log"} {
		if _, err := rekor.NewPublisher(rekor.Log{URL: "http://127.0.0.1:1", Origin: o, PublicKey: k.Public()}, 0); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}
}
