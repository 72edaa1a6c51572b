package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// writeCredentials writes a self-signed serving certificate for 127.0.0.1 and
// localhost (it is also the kubeconfig's CA), the service-account key pair and
// a token file granting a random token system:masters.
func (c *Cluster) writeCredentials() error {
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kubetest-apiserver"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &servingKey.PublicKey, servingKey)
	if err != nil {
		return err
	}
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}

	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	c.token = hex.EncodeToString(token)

	servingKeyPEM, err := privateKeyPEM(servingKey)
	if err != nil {
		return err
	}
	saKeyPEM, err := privateKeyPEM(saKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"serving.crt": c.caPEM,
		"serving.key": servingKeyPEM,
		"sa.key":      saKeyPEM,
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv":  []byte(c.token + ",admin,admin,system:masters\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func privateKeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// etcdDataPrefix names etcd data directories on /dev/shm (tmpfs: etcd 3.4 has
// no --unsafe-no-fsync, and fsync on disk makes it slow).
const etcdDataPrefix = "stepseal-kubetest-etcd-"

// etcdDataDir creates a data directory on /dev/shm (or the temp dir when there
// is none), first removing ones left behind by etcds that no longer run: a
// test binary killed by -timeout never reaches its cleanup, and tmpfs is RAM.
func etcdDataDir() (string, error) {
	base := "/dev/shm"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = os.TempDir()
	}
	sweepEtcdData(base)
	return os.MkdirTemp(base, etcdDataPrefix)
}

// recordEtcdPID writes the owning etcd's pid next to its data directory, so
// sweepEtcdData knows when the directory is abandoned.
func recordEtcdPID(dataDir string, pid int) error {
	return os.WriteFile(dataDir+".pid", []byte(strconv.Itoa(pid)), 0o600)
}

func sweepEtcdData(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, etcdDataPrefix) {
			continue
		}
		dir := filepath.Join(base, name)
		b, err := os.ReadFile(dir + ".pid")
		if err != nil {
			// Not yet recorded: only a directory this old is abandoned.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 10*time.Minute {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !alive(pid) {
			_ = os.RemoveAll(dir)
			_ = os.Remove(dir + ".pid")
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
