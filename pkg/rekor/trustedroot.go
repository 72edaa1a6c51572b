package rekor

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// TrustedRoot is a Sigstore trusted_root.json naming logs as their Rekor v2
// transparency logs, built with sigstore-go's own root types, for cosign
// (--trusted-root with --key, no Fulcio or TSA) and sigstore-go: each log
// by its ID (the checkpoint key hash), public key and baseUrl
// https://<origin> — sigstore-go verifies a v2 checkpoint under the host
// name of baseUrl, so a self-hosted log's origin must be what its
// rekor-server --hostname says. since is when the logs' keys became valid.
func TrustedRoot(since time.Time, logs ...Log) ([]byte, error) {
	tlogs := map[string]*root.TransparencyLog{}
	for _, l := range logs {
		if err := l.Check(); err != nil {
			return nil, err
		}
		id, err := l.ID()
		if err != nil {
			return nil, err
		}
		tlogs[hex.EncodeToString(id)] = &root.TransparencyLog{
			BaseURL:             "https://" + l.Origin,
			ID:                  id,
			ValidityPeriodStart: since.UTC().Truncate(time.Second),
			HashFunc:            crypto.SHA256,
			PublicKey:           l.PublicKey,
			SignatureHashFunc:   crypto.SHA256,
		}
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, nil, nil, nil, tlogs)
	if err != nil {
		return nil, err
	}
	out, err := tr.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	return out, nil
}

// LogsFromTrustedRoot returns the Rekor v2 logs of a Sigstore
// trusted_root.json (sigstore-go's parser): each log's origin is the host
// of its baseUrl, as sigstore-go verifies it. Logs whose ID is not their
// checkpoint key hash under that origin (Rekor v1 logs) are left out; none
// left is an error.
func LogsFromTrustedRoot(data []byte) ([]Log, error) {
	tr, err := root.NewTrustedRootFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	var out []Log
	for id, tl := range tr.RekorLogs() {
		u, err := url.Parse(tl.BaseURL)
		if err != nil || u.Hostname() == "" {
			continue
		}
		l := Log{Origin: u.Hostname(), PublicKey: tl.PublicKey}
		if lid, err := l.ID(); err != nil || hex.EncodeToString(lid) != id {
			continue
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trusted root: no Rekor v2 log (a log whose ID is its checkpoint key hash under its baseUrl's host)")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin < out[j].Origin })
	return out, nil
}

// LogFromTrustedRoot is the log of a trusted root that writeURL writes to:
// its only Rekor v2 log, or the one whose origin is writeURL's host.
func LogFromTrustedRoot(data []byte, writeURL string) (Log, error) {
	logs, err := LogsFromTrustedRoot(data)
	if err != nil {
		return Log{}, err
	}
	u, err := url.Parse(writeURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Log{}, fmt.Errorf("%q is not a Rekor URL (http(s)://host[:port])", writeURL)
	}
	if len(logs) == 1 {
		logs[0].URL = writeURL
		return logs[0], nil
	}
	for _, l := range logs {
		if l.Origin == u.Hostname() {
			l.URL = writeURL
			return l, nil
		}
	}
	return Log{}, fmt.Errorf("trusted root: %d Rekor v2 logs and none of origin %s", len(logs), u.Hostname())
}
