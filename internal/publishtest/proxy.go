package publishtest

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stepseal/stepseal/internal/testcert"
)

// Proxy is a reverse proxy in front of a registry that counts what passes
// through it: the witness that a refused publish wrote nothing, or did not
// contact the registry at all.
type Proxy struct {
	// Host is host:port of the proxy.
	Host string
	// CAPEM is the PEM certificate that signed the proxy's serving
	// certificate (TLS only).
	CAPEM []byte

	mu       sync.Mutex
	requests []string
	writes   int
}

// ProxyOptions configure StartProxy.
type ProxyOptions struct {
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// TLS serves HTTPS with a certificate for Addr's IP, signed by a CA of
	// its own (CAPEM).
	TLS bool
	// User and Password, when set, are required as HTTP basic
	// authentication on every request (a challenge otherwise).
	User, Password string
}

// StartProxy proxies to the plain-HTTP registry at upstream (host:port)
// until the test ends.
func StartProxy(t testing.TB, upstream string, o ProxyOptions) *Proxy {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Host: ln.Addr().String()}
	target := &url.URL{Scheme: "http", Host: upstream}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		// The registry builds upload locations from these: point them
		// back at the proxy.
		r.Out.Host = r.In.Host
		r.Out.Header.Set("X-Forwarded-Host", r.In.Host)
		if o.TLS {
			r.Out.Header.Set("X-Forwarded-Proto", "https")
		} else {
			r.Out.Header.Set("X-Forwarded-Proto", "http")
		}
	}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.Path)
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		default:
			p.writes++
		}
		p.mu.Unlock()
		if o.User != "" {
			if u, pw, ok := r.BasicAuth(); !ok || u != o.User || pw != o.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="publishtest"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if o.TLS {
		ip := ln.Addr().(*net.TCPAddr).IP
		cert, ca := certFor(t, ip)
		p.CAPEM = ca
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// Requests are the requests seen so far, "METHOD /path" each.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Writes counts the requests that were not GET or HEAD.
func (p *Proxy) Writes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// Reset forgets what was counted.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests, p.writes = nil, 0
}

// certFor makes a CA and a serving certificate for ip signed by it.
func certFor(t testing.TB, ip net.IP) (tls.Certificate, []byte) {
	t.Helper()
	return testcert.ForIP(t, "publishtest CA", ip)
}
