package rekor

import (
	"crypto"
	"fmt"
	"net/url"
	"strings"

	rekornote "github.com/sigstore/rekor-tiles/v2/pkg/note"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// Log is one Rekor v2 log as a publisher and a verifier know it.
type Log struct {
	// URL is the write endpoint's base: entries are POSTed to
	// URL/api/v2/log/entries.
	URL string
	// TilesURL is the base of its C2SP tlog-tiles (checkpoint, tile/…,
	// tile/entries/…), which rekor-tiles serves as static files, not from
	// its API; read only to answer a duplicate. Empty: URL.
	TilesURL string
	// Origin is the checkpoint origin: the log's public host name
	// (rekor-server --hostname). Verifiers such as sigstore-go take it from
	// the host of the trusted root's baseUrl, so it must be a bare host
	// name: no scheme, port or path.
	Origin string
	// PublicKey verifies its checkpoints (Ed25519, ECDSA or RSA).
	PublicKey crypto.PublicKey
}

// Check reports what is wrong with l's origin and key, naming them.
func (l Log) Check() error {
	if l.Origin == "" || strings.ContainsAny(l.Origin, ":/ \t\n+") {
		return fmt.Errorf("rekor log origin %q is not a bare host name (sigstore verifiers take the origin from the trusted root's baseUrl host)", l.Origin)
	}
	if l.PublicKey == nil {
		return fmt.Errorf("rekor log %s: no public key", l.Origin)
	}
	if _, err := l.ID(); err != nil {
		return err
	}
	return nil
}

// ID is the log's ID: its checkpoint key's C2SP signed-note key hash, which
// Rekor v2 returns as logId.keyId and trusted roots key logs by.
func (l Log) ID() ([]byte, error) {
	_, id, err := rekornote.KeyHash(l.Origin, l.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("rekor log %s: key: %w", l.Origin, err)
	}
	return id, nil
}

// noteVerifier verifies l's checkpoints (signed notes named l.Origin).
func (l Log) noteVerifier() (note.Verifier, error) {
	sv, err := signature.LoadVerifier(l.PublicKey, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("rekor log %s: key: %w", l.Origin, err)
	}
	nv, err := rekornote.NewNoteVerifier(l.Origin, sv)
	if err != nil {
		return nil, fmt.Errorf("rekor log %s: key: %w", l.Origin, err)
	}
	return nv, nil
}

// tilesURL is where l's tiles are read.
func (l Log) tilesURL() (*url.URL, error) {
	s := l.TilesURL
	if s == "" {
		s = l.URL
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rekor log %s: %q is not a tiles URL", l.Origin, s)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}
