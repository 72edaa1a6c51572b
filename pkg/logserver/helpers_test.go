package logserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

var ctx = context.Background()

// fixture is a served log on loopback with one allowed key.
type fixture struct {
	dir    string
	key    tlog.Key
	signer signing.Signer
	srv    *Server
	http   *httptest.Server
	client *Client
}

func logKey(t testing.TB) tlog.Key {
	t.Helper()
	skey, _, err := tlog.GenerateKey("log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB, opts *Options) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), key: logKey(t), signer: signingtest.SignerOf(t, signing.ED25519)}
	f.start(t, opts)
	return f
}

func (f *fixture) start(t testing.TB, opts *Options) {
	t.Helper()
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Keys == nil {
		o.Keys = Keys{signingtest.Verifier(t, f.signer)}
	}
	srv, err := Open(ctx, f.dir, f.key, o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.http = httptest.NewServer(srv.Handler())
	if f.client, err = NewClient(f.http.URL, f.key.Verifier, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.srv == nil {
		return
	}
	f.http.Close()
	f.srv.Close(ctx)
	f.srv = nil
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// provenance is a DSSE envelope of a SLSA provenance statement about
// subjects (names; their digests are sha256 of the names) for run.
func provenance(t testing.TB, s signing.Signer, run string, subjects ...string) []byte {
	t.Helper()
	type subj struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	}
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate":     map[string]any{"runDetails": map[string]any{"metadata": map[string]any{"invocationId": run}}},
	}
	var ss []subj
	for _, n := range subjects {
		ss = append(ss, subj{Name: n, Digest: map[string]string{"sha256": sha(n)}})
	}
	st["subject"] = ss
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// link is a signed in-toto link of step for run with products (names,
// digests sha256 of the names).
func link(t testing.TB, s signing.Signer, run, step string, products ...string) []byte {
	t.Helper()
	p := map[string]in_toto.HashObj{}
	for _, n := range products {
		p[n] = in_toto.HashObj{"sha256": sha(n)}
	}
	l := in_toto.Link{Type: "link", Name: step, Materials: map[string]in_toto.HashObj{}, Products: p,
		ByProducts: map[string]interface{}{}, Command: []string{"true"}, Environment: map[string]interface{}{attest.EnvRunID: run}}
	mb, err := attest.SignLink(ctx, l, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(mb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func subject(name string) string { return "sha256:" + sha(name) }

func docName(i int) string { return fmt.Sprintf("doc-%d", i) }
