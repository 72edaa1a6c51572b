package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Paths the webhook serves.
const (
	PathValidate = "/validate"
	PathMutate   = "/mutate"
	PathHealthz  = "/healthz"
	// PathNamespaces serves the LabelGuard, when one is given.
	PathNamespaces = "/namespaces"
)

// Mux serves the validating and mutating handlers, the workloads' warnings
// (WorkloadHandler), the label guard (if guard is not nil) and a health
// check.
func Mux(d *Decider, guard *LabelGuard) http.Handler { return ObservedMux(d, guard, nil) }

// ObservedMux is Mux whose handlers record metrics and Events through obs.
func ObservedMux(d *Decider, guard *LabelGuard, obs *Observer) http.Handler {
	m := http.NewServeMux()
	m.Handle(PathValidate, &Handler{d: d, obs: obs})
	m.Handle(PathMutate, &Handler{d: d, mutate: true, obs: obs})
	m.Handle(PathWorkloads, WorkloadHandler(d))
	if guard != nil {
		m.Handle(PathNamespaces, guard)
	}
	m.HandleFunc(PathHealthz, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return m
}

// CertReloader serves the certificate in a PEM pair of files, read again
// whenever either file's modification time changes, so a rotated serving
// certificate (a Secret volume updated in place) is used from the next
// handshake on without a restart. A pair that does not load keeps the
// last good certificate.
type CertReloader struct {
	CertFile, KeyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	mod  [2]time.Time
}

// GetCertificate is tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ci, err1 := os.Stat(r.CertFile)
	ki, err2 := os.Stat(r.KeyFile)
	if err := errors.Join(err1, err2); err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, err
	}
	if r.cert != nil && ci.ModTime().Equal(r.mod[0]) && ki.ModTime().Equal(r.mod[1]) {
		return r.cert, nil
	}
	c, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	r.cert, r.mod = &c, [2]time.Time{ci.ModTime(), ki.ModTime()}
	return r.cert, nil
}

// Serve serves h (Mux) over TLS on l until ctx ends, then shuts down
// gracefully (in-flight reviews finish).
func Serve(ctx context.Context, l net.Listener, h http.Handler, certs *CertReloader) error {
	if _, err := certs.GetCertificate(nil); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	}
}
