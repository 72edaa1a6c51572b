package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/stepseal/stepseal/pkg/oci"
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

func (c *Client) download(ctx context.Context, u, p string, r *Resolution) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.FileTimeout)
	defer cancel()
	if IsOCI(u) {
		return c.downloadOCI(ctx, u, p, r)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &Error{Category: ErrUnavailable, Role: r.Role, Path: p, Detail: "target URL", Err: err}
	}
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return nil, targetNetErr(ctx, r, p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Category: ErrUnavailable, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: fmt.Sprintf("GET %s: %s", u, resp.Status)}
	}
	buf := bytes.NewBuffer(make([]byte, 0, r.Length+1))
	if _, err := io.Copy(buf, io.LimitReader(resp.Body, r.Length+1)); err != nil {
		return nil, targetNetErr(ctx, r, p, err)
	}
	if int64(buf.Len()) > r.Length {
		return nil, &Error{Category: ErrTooLarge, Role: r.Role, Version: r.RoleVersion, Path: p,
			Detail: fmt.Sprintf("%s is longer than the %d bytes the role vouches for", u, r.Length)}
	}
	return buf.Bytes(), nil
}

func targetNetErr(ctx context.Context, r *Resolution, p string, err error) error {
	// err names the URL already.
	if isTimeout(err) || ctx.Err() != nil {
		return &Error{Category: ErrTimeout, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: "target file", Err: err}
	}
	return &Error{Category: ErrUnavailable, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: "target file", Err: err}
}

func (c *Client) downloadOCI(ctx context.Context, u, p string, r *Resolution) ([]byte, error) {
	tag, err := ociTag(u)
	if err != nil {
		return nil, &Error{Category: ErrUnavailable, Role: r.Role, Path: p, Detail: "targets URL", Err: err}
	}
	reg := c.o.Registry
	if reg == nil {
		if reg, err = oci.New(oci.WithProgress(nil)); err != nil {
			return nil, &Error{Category: ErrUnavailable, Role: r.Role, Path: p, Err: err}
		}
	}
	data, _, err := reg.FetchBytes(ctx, tag, r.Length)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, oci.ErrTooLarge):
		return nil, &Error{Category: ErrTooLarge, Role: r.Role, Version: r.RoleVersion, Path: p,
			Detail: fmt.Sprintf("%s is longer than the %d bytes the role vouches for", u, r.Length), Err: err}
	case errors.Is(err, oci.ErrBlobDigest), errors.Is(err, oci.ErrArtifact):
		return nil, &Error{Category: ErrDigestMismatch, Role: r.Role, Version: r.RoleVersion, Path: p, Detail: u, Err: err}
	}
	return nil, targetNetErr(ctx, r, p, err)
}
