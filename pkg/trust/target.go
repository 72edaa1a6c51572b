package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultMaxTargetSize caps a target file Fetch downloads (layouts,
// policies and keys are kilobytes; an image is referenced by its manifest
// digest, never downloaded through TUF).
const DefaultMaxTargetSize = 16 << 20

// Target is a target file whose bytes match what its role vouches for.
type Target struct {
	Data []byte
	*Resolution
	// Cached says the bytes came from the cache's content-addressed copy,
	// not from the network.
	Cached bool
}

// TargetURL is where the repository serves path's file: under TargetsURL,
// as <dir>/<sha256>.<name> when the trusted root sets consistent_snapshot
// (TUF's consistent targets), else as the path itself.
func (c *Client) TargetURL(r *Resolution) string {
	base := strings.TrimSuffix(c.targetsURL(), "/")
	if IsOCI(base) {
		return base + "/" + TargetTag(r.SHA256)
	}
	st := c.state.Load()
	if st != nil && st.root != nil && st.root.Signed.ConsistentSnapshot {
		dir, name := path.Split(r.Path)
		return base + "/" + dir + r.SHA256 + "." + name
	}
	return base + "/" + r.Path
}

// targetsURL is ClientOptions.TargetsURL, or the metadata URL's sibling
// "targets" directory (<base>/metadata → <base>/targets, the layout
// `stepseal trust publish` writes).
func (c *Client) targetsURL() string {
	if c.o.TargetsURL != "" {
		return c.o.TargetsURL
	}
	src := strings.TrimSuffix(c.o.Source, "/")
	if IsOCI(src) {
		return src // target files are artifacts of the same repository
	}
	if i := strings.LastIndex(src, "/"); i >= 0 {
		return src[:i] + "/targets"
	}
	return src + "/targets"
}

// Fetch resolves path (Resolve), then returns its file once its length and
// sha256 are the ones the vouching role signed: from the cache's
// content-addressed copy (CacheDir/targets/<sha256>) when it is there and
// still matches, else downloaded from TargetURL within FileTimeout and
// ctx, at most the vouched length plus one byte read (endless data), and
// then cached (0600). A role vouching for more than MaxTargetSize bytes is
// refused before anything is downloaded (ErrTooLarge); a file that does
// not match is ErrDigestMismatch naming role, version and both digests;
// a server that cannot be reached is ErrUnavailable or ErrTimeout. A
// refused download is never cached.
func (c *Client) Fetch(ctx context.Context, p string) (*Target, error) {
	r, err := c.Resolve(ctx, p)
	if err != nil {
		return nil, err
	}
	if r.Length > c.o.MaxTargetSize {
		return nil, &Error{Category: ErrTooLarge, Role: r.Role, Version: r.RoleVersion, Path: p,
			Detail: fmt.Sprintf("the role vouches for %d bytes, more than the %d this client fetches", r.Length, c.o.MaxTargetSize)}
	}
	if len(r.SHA256) != 64 {
		return nil, &Error{Category: ErrUnsupported, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: "the target has no sha256 to check its file against"}
	}
	cached := filepath.Join(c.o.CacheDir, "targets", r.SHA256)
	if data, err := os.ReadFile(cached); err == nil && matches(data, r) {
		return &Target{Data: data, Resolution: r, Cached: true}, nil
	}
	u := c.TargetURL(r)
	data, err := c.download(ctx, u, p, r)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != r.Length || !matches(data, r) {
		sum := sha256.Sum256(data)
		return nil, &Error{Category: ErrDigestMismatch, Role: r.Role, Version: r.RoleVersion, Path: p,
			Detail: fmt.Sprintf("%s served %d bytes with sha256 %s, but the role vouches for %d bytes with sha256 %s",
				u, len(data), hex.EncodeToString(sum[:]), r.Length, r.SHA256)}
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o700); err == nil {
		// A cache that cannot be written only costs a download next time.
		_ = writeFileAtomic(cached, data, false)
	}
	return &Target{Data: data, Resolution: r}, nil
}

func matches(data []byte, r *Resolution) bool {
	if int64(len(data)) != r.Length {
		return false
	}
	sum := sha256.Sum256(data)
	want, err := hex.DecodeString(r.SHA256)
	return err == nil && bytes.Equal(sum[:], want)
}

// download gets a target file the way metadata is got (fetcher.get: the
// per-file timeout, the cap read, HTTP or an OCI registry), at most the
// vouched length plus one byte, and names the target in its errors.
func (c *Client) download(ctx context.Context, u, p string, r *Resolution) ([]byte, error) {
	f := &fetcher{ctx: ctx, client: c.o.HTTPClient, reg: c.o.Registry, timeout: c.o.FileTimeout}
	data, err := f.get(u, r.Role, r.Length)
	if err == nil {
		return data, nil
	}
	var he *metadata.ErrDownloadHTTP
	var te *Error
	switch {
	case errors.As(err, &he):
		return nil, &Error{Category: ErrUnavailable, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: fmt.Sprintf("GET %s: status %d", u, he.StatusCode)}
	case errors.As(err, &te):
		te.Version, te.Path = r.RoleVersion, p
		if te.Category == ErrMalformed {
			// A registry artifact that is not one layer of its digest: not
			// the file the role vouches for.
			te.Category = ErrDigestMismatch
		}
		return nil, te
	}
	return nil, err
}
