package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// countingRegistry is ggcr's registry counting the pings (GET /v2/) and
// the TCP connections it is asked on.
type countingRegistry struct {
	host         string
	pings, conns atomic.Int64
}

func newCountingRegistry(t *testing.T) *countingRegistry {
	t.Helper()
	c := &countingRegistry{}
	reg := ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			c.pings.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			c.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	c.host = strings.TrimPrefix(s.URL, "http://")
	return c
}

// TestClientReusesConnections: one Client pings the registry and opens
// connections once per repository for the whole push → sign → attest →
// tag sequence, where a fresh client per call (the package-level
// functions) pings for every call.
func TestClientReusesConnections(t *testing.T) {
	ctx := context.Background()
	key := genKey(t, signing.ECDSA)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	d0, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	sequence := func(t *testing.T, host string, push func(tag bool) error, sign, attest func() error) {
		t.Helper()
		for _, step := range []func() error{func() error { return push(false) }, sign, attest, func() error { return push(true) }} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
	}

	shared := newCountingRegistry(t)
	c, err := New(testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, shared.host+"/demo/app:v1")
	dref := ref.Context().Digest(d0.String())
	sequence(t, shared.host,
		func(tag bool) error {
			r := ref
			if !tag {
				r = dref
			}
			_, err := c.Push(ctx, img, r)
			return err
		},
		func() error { return c.Sign(ctx, dref, key) },
		func() error {
			return c.Attest(ctx, dref, envelopeFor(t, dref, "https://slsa.dev/provenance/v1", key), "")
		})
	if _, err := c.VerifySignatures(ctx, dref, key.Public()); err != nil {
		t.Fatal(err)
	}

	fresh := newCountingRegistry(t)
	fref := mustRef(t, fresh.host+"/demo/app:v1")
	fdref := fref.Context().Digest(d0.String())
	sequence(t, fresh.host,
		func(tag bool) error {
			r := fref
			if !tag {
				r = fdref
			}
			_, err := Push(ctx, img, r, testOpts...)
			return err
		},
		func() error { return Sign(ctx, fdref, key, testOpts...) },
		func() error {
			return Attest(ctx, fdref, envelopeFor(t, fdref, "https://slsa.dev/provenance/v1", key), "", testOpts...)
		})
	if _, err := VerifySignatures(ctx, fdref, key.Public(), testOpts...); err != nil {
		t.Fatal(err)
	}

	t.Logf("one Client: %d pings, %d connections; a client per call: %d pings, %d connections", shared.pings.Load(), shared.conns.Load(), fresh.pings.Load(), fresh.conns.Load())
	// One Puller and one Pusher: at most one ping each for the repository.
	if p := shared.pings.Load(); p > 2 {
		t.Errorf("one Client pinged the registry %d times for push, sign, attest, tag, verify; want at most 2", p)
	}
	if p, f := shared.pings.Load(), fresh.pings.Load(); p >= f {
		t.Errorf("one Client pinged %d times, a client per call %d: no reuse", p, f)
	}
	if n, f := shared.conns.Load(), fresh.conns.Load(); n > f {
		t.Errorf("one Client opened %d connections, a client per call %d", n, f)
	}
}

// TestClientConcurrentUse: a Client serves concurrent readers (what an
// admission webhook does with one Client per process).
func TestClientConcurrentUse(t *testing.T) {
	ctx := context.Background()
	tg := inProcess(t)
	key := genKey(t, signing.ECDSA)
	d := pushRandom(t, tg.host, "demo/app", "v1")
	if err := Sign(ctx, d, key, testOpts...); err != nil {
		t.Fatal(err)
	}
	c, err := New(testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.Resolve(ctx, mustRef(t, tg.host+"/demo/app:v1"))
			if err == nil && got != d {
				err = fmt.Errorf("resolved %s, want %s", got, d)
			}
			if err == nil {
				_, err = c.VerifySignatures(ctx, got, key.Public())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestNewValidatesOptions(t *testing.T) {
	if _, err := New(WithJobs(0)); err == nil {
		t.Error("New(WithJobs(0)) accepted")
	}
	if _, err := Push(context.Background(), nil, mustRef(t, "127.0.0.1:1/demo/app:v1"), append(testOpts, WithJobs(-1))...); err == nil || !strings.Contains(err.Error(), "WithJobs(-1)") {
		t.Errorf("a package-level call with a bad option: %v", err)
	}
}

// TestErrorsMatchTheSharedVocabulary: every sentinel of this package is one
// reason of pkg/reject, and a registry that could not be asked (down,
// credentials refused) is "could not check", never a refusal.
func TestErrorsMatchTheSharedVocabulary(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason *reject.Reason
	}{
		{ErrReference, reject.ErrMalformed},
		{ErrInsecure, reject.ErrUnsupported},
		{ErrUnreachable, reject.ErrUnavailable},
		{ErrRegistryAuth, reject.ErrUnavailable},
		{ErrNotFound, reject.ErrMissing},
		{ErrBlobDigest, reject.ErrMismatch},
		{ErrArtifact, reject.ErrMalformed},
		{ErrNoSignature, reject.ErrMissing},
		{ErrSignature, reject.ErrSignature},
		{ErrDigestMismatch, reject.ErrMismatch},
		{ErrPlainHTTP, reject.ErrUnavailable},
		{&PlainHTTPError{Registry: "127.0.0.1:5000", Loopback: true}, reject.ErrUnavailable},
	} {
		err := fmt.Errorf("context: %w", c.err)
		if !errors.Is(err, c.err) || !errors.Is(err, c.reason) || reject.Of(err) != c.reason {
			t.Errorf("%v: want errors.Is %v, reject.Of = %v", c.err, c.reason, reject.Of(err))
		}
		unable := c.reason == reject.ErrUnavailable
		if errors.Is(err, reject.ErrUnableToCheck) != unable || errors.Is(err, reject.ErrRefused) == unable {
			t.Errorf("%v: refused %v, could not check %v", c.err, errors.Is(err, reject.ErrRefused), errors.Is(err, reject.ErrUnableToCheck))
		}
	}
	if errors.Is(ErrRegistryAuth, reject.ErrUnauthorized) {
		t.Error("registry credentials refused (HTTP 401) matches reject.ErrUnauthorized, a verdict")
	}
}

// TestRegistryErrorsKeepTheirCause: the one-line message of a registry
// error still unwraps to go-containerregistry's error.
func TestRegistryErrorsKeepTheirCause(t *testing.T) {
	cause := errors.New("first line\nsecond line")
	err := registryError("r.example", cause)
	if !errors.Is(err, cause) || strings.Contains(err.Error(), "\n") {
		t.Errorf("registryError = %q, unwraps to the cause: %v", err, errors.Is(err, cause))
	}
}
