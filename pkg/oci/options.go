package oci

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/term"
)

// Option configures registry access.
type Option func(*options)

type options struct {
	insecure  bool
	keychain  authn.Keychain
	auth      authn.Authenticator
	transport http.RoundTripper
	progress  io.Writer
	quiet     bool
	jobs      int
}

// WithInsecure allows plain HTTP and unverified TLS. It is refused for any
// registry that is not on loopback (127.0.0.0/8, ::1, localhost); without it
// every request uses verified TLS, even where go-containerregistry would
// fall back to HTTP (RFC 1918 addresses).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithKeychain resolves credentials from k instead of the docker config
// (authn.DefaultKeychain).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithAuth uses a fixed authenticator for every registry.
func WithAuth(a authn.Authenticator) Option { return func(o *options) { o.auth = a } }

// WithTransport replaces the base HTTP transport (the insecure guard still applies).
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithProgress writes upload progress to w. Without this option progress goes
// to stderr when stderr is a terminal and nowhere otherwise.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w; o.quiet = w == nil } }

// WithJobs bounds the number of blobs transferred concurrently (default 4).
func WithJobs(n int) Option { return func(o *options) { o.jobs = n } }

func makeOptions(opts []Option) *options {
	o := &options{keychain: authn.DefaultKeychain, jobs: 4}
	for _, f := range opts {
		f(o)
	}
	return o
}

// progressWriter is where progress goes: the explicit writer, else stderr if
// it is a terminal.
func (o *options) progressWriter() io.Writer {
	if o.progress != nil || o.quiet {
		return o.progress
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return os.Stderr
	}
	return nil
}

// ParseReference parses "REGISTRY/REPO:TAG" or "REGISTRY/REPO@sha256:…".
// A reference without tag or digest is an error (no implicit :latest), and
// so is one without an explicit registry host.
func ParseReference(s string, opts ...Option) (name.Reference, error) {
	return parseReference(s, makeOptions(opts))
}

func parseReference(s string, o *options) (name.Reference, error) {
	var nopts []name.Option
	nopts = append(nopts, name.StrictValidation)
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(s, nopts...)
	if err != nil {
		last := s[strings.LastIndexByte(s, '/')+1:]
		if strings.Contains(s, "/") && !strings.ContainsAny(last, ":@") {
			return nil, fmt.Errorf("%w: %q has neither tag nor digest (want REPO:TAG or REPO@sha256:<hex>)", ErrReference, s)
		}
		return nil, fmt.Errorf("%w: %q: %w", ErrReference, s, oneLineError{err})
	}
	if err := checkInsecure(ref.Context().Registry, o); err != nil {
		return nil, err
	}
	return ref, nil
}

// ParseDigest parses a reference that must carry a digest.
func ParseDigest(s string, opts ...Option) (name.Digest, error) {
	return parseDigest(s, makeOptions(opts))
}

func parseDigest(s string, o *options) (name.Digest, error) {
	ref, err := parseReference(s, o)
	if err != nil {
		return name.Digest{}, err
	}
	d, ok := ref.(name.Digest)
	if !ok {
		return name.Digest{}, fmt.Errorf("%w: %q has no digest (verification is by digest: REPO@sha256:<hex>)", ErrReference, s)
	}
	return d, nil
}

// IsLoopback reports whether a registry host (with or without port) is on
// loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkInsecure(reg name.Registry, o *options) error {
	if o.insecure && !IsLoopback(reg.RegistryStr()) {
		return fmt.Errorf("%w: registry %s is not on loopback; the insecure option (plain HTTP, unverified TLS) is allowed for 127.0.0.0/8, ::1 and localhost only", ErrInsecure, reg.RegistryStr())
	}
	return nil
}

// bind rebinds a reference to an insecure registry when asked, so
// references parsed elsewhere get the same scheme treatment.
func bind(ref name.Reference, o *options) (name.Reference, error) {
	if err := checkInsecure(ref.Context().Registry, o); err != nil {
		return nil, err
	}
	if !o.insecure {
		return ref, nil
	}
	var nopts = []name.Option{name.Insecure}
	return name.ParseReference(ref.String(), nopts...)
}

func bindDigest(d name.Digest, o *options) (name.Digest, error) {
	ref, err := bind(d, o)
	if err != nil {
		return name.Digest{}, err
	}
	return ref.(name.Digest), nil
}

func looseTransport(base http.RoundTripper) http.RoundTripper {
	t, ok := base.(*http.Transport)
	if !ok {
		return base
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // loopback only, see guard
	return t
}

// guard enforces the insecure policy on every request, redirects included:
// plain HTTP and unverified TLS only to loopback hosts and only when asked;
// anything else is upgraded to verified HTTPS.
type guard struct {
	strict, loose http.RoundTripper
	insecure      bool
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	loop := g.insecure && IsLoopback(r.URL.Host)
	if r.URL.Scheme == "http" && !loop {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	if loop {
		return g.loose.RoundTrip(r)
	}
	return g.strict.RoundTrip(r)
}
