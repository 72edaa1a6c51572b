package admission

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// issue writes a serving certificate for 127.0.0.1 from a fresh CA to
// certFile/keyFile and returns the CA pool.
func issue(t *testing.T, certFile, keyFile string, modTime time.Time) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile} {
		_ = os.Chtimes(f, modTime, modTime)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool
}

// TestServeRotatesCertificate: Serve answers reviews over TLS and, when the
// certificate files are replaced, the next connection gets the new
// certificate without a restart (the unit half of W35); a broken pair
// keeps the last good one.
func TestServeRotatesCertificate(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool1 := issue(t, certFile, keyFile, time.Now().Add(-time.Minute))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, Mux(e.decider(nil), nil), &CertReloader{CertFile: certFile, KeyFile: keyFile})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ask := func(pool *x509.CertPool) error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Post("https://"+l.Addr().String()+PathValidate, "application/json", bytes.NewReader(review(t, admissionv1.Create, "", pod(e.nop.String()), nil, false)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || !out.Response.Allowed {
			t.Fatalf("%v %+v", err, out.Response)
		}
		return nil
	}
	if err := ask(pool1); err != nil {
		t.Fatal(err)
	}
	pool2 := issue(t, certFile, keyFile, time.Now())
	if err := ask(pool2); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := ask(pool1); err == nil {
		t.Error("the old certificate is still served")
	}
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(keyFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if err := ask(pool2); err != nil {
		t.Fatalf("a broken pair replaced the good certificate: %v", err)
	}
}
