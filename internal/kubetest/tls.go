package kubetest

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stepseal/stepseal/internal/testcert"
)

// ServeTLS serves h over TLS on 127.0.0.1 with a certificate for that
// address from a fresh CA named caName (testcert.ForIP), as a webhook the
// kube-apiserver calls must be served. It returns the server's URL and
// the CA certificate in PEM (a webhook configuration's caBundle); the
// server closes with t.
func ServeTLS(t testing.TB, h http.Handler, caName string) (string, []byte) {
	t.Helper()
	cert, caPEM := testcert.ForIP(t, caName, net.ParseIP("127.0.0.1"))
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, caPEM
}
