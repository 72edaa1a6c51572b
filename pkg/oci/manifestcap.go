package oci

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxManifestBytes bounds a manifest, image index or referrers list that a
// Client reads: the size the OCI distribution spec says registries should
// accept at least, and Distribution's own limit. go-containerregistry reads
// up to 100 MiB into memory before parsing; an admission webhook reads
// manifests for every new digest, so a larger one is refused (ErrManifestTooLarge)
// before it is read, by its Content-Length, or as soon as more arrives than
// the cap.
const MaxManifestBytes = 4 << 20

// manifestCap is the Client's transport: GET responses for manifests and
// referrers lists larger than max fail with ErrManifestTooLarge.
type manifestCap struct {
	next http.RoundTripper
	max  int64
}

func isManifestPath(p string) bool {
	return strings.Contains(p, "/manifests/") || strings.Contains(p, "/referrers/")
}

func (m *manifestCap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := m.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !isManifestPath(r.URL.Path) || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	what := r.URL.Host + r.URL.Path
	if resp.ContentLength > m.max {
		resp.Body.Close()
		return nil, tooLarge(what, resp.ContentLength, m.max)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: m.max, what: what, max: m.max}
	return resp, nil
}

func tooLarge(what string, n, max int64) error {
	size := ""
	if n > 0 {
		size = fmt.Sprintf(" %d bytes,", n)
	}
	return fmt.Errorf("%w: %s is%s more than the %d MiB stepseal reads of a manifest", ErrManifestTooLarge, what, size, max>>20)
}

// cappedBody fails with ErrManifestTooLarge once more than max bytes were read (a
// registry that omits or understates Content-Length).
type cappedBody struct {
	rc        io.ReadCloser
	left, max int64
	what      string
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, tooLarge(c.what, 0, c.max)
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, tooLarge(c.what, 0, c.max)
	}
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }
