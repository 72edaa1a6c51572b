package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/oci"
)

// fetcher implements go-tuf's fetcher.Fetcher for one Refresh: it carries
// the refresh's ctx (go-tuf's interface has none), bounds every file by a
// timeout and a size cap, and runs the guard (checkMetadata) on every
// metadata file before go-tuf parses it. It records the root versions it
// downloaded (go-tuf keeps only the last one) and bytes and requests spent.
type fetcher struct {
	ctx     context.Context
	source  string
	client  *http.Client
	reg     *oci.Client // for an oci:// source
	timeout time.Duration
	maxRole int64
	// offline refuses every download (Client.LoadCache).
	offline bool

	mu       sync.Mutex
	roots    map[int64][]byte
	requests int
	bytes    int64
	// last is the role of the last file handed to go-tuf: when go-tuf's
	// error names no role (a version or hash other than the one the
	// timestamp or snapshot names), it is about that file.
	last string
}

// lastRole returns the role of the last file handed to go-tuf.
func (f *fetcher) lastRole() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// DownloadFile implements fetcher.Fetcher. The duration argument is unused
// by go-tuf v2.4.2's updater (always 0); the fetcher's own timeout applies.
func (f *fetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	role, version := roleOfURL(urlPath)
	if f.offline {
		return nil, &Error{Category: ErrUnavailable, Role: role, Detail: "not in the cache, and loading the cache does not go to the network"}
	}
	if c := maxSizeOf(role, f.maxRole); maxLength <= 0 || maxLength > c {
		maxLength = c
	}
	data, err := f.get(urlPath, role, maxLength)
	if err != nil {
		return nil, err
	}
	if err := checkMetadata(role, data, maxLength); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.last = role
	if role == "root" && version > 0 {
		f.roots[version] = data
	}
	f.mu.Unlock()
	return data, nil
}

func (f *fetcher) get(urlPath, role string, maxLength int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	if IsOCI(urlPath) {
		return f.getOCI(ctx, urlPath, role, maxLength)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, &Error{Category: ErrUnavailable, Role: role, Err: err}
	}
	f.mu.Lock()
	f.requests++
	f.mu.Unlock()
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, f.netErr(ctx, role, urlPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		status := resp.StatusCode
		if role == "root" && status == http.StatusForbidden {
			// Object stores (S3, GCS without list permission) answer 403
			// for an object that does not exist; go-tuf ends its root loop
			// only on 404 and would fail every refresh. Taking 403 for "no
			// newer root" gives a mirror no more power than withholding the
			// file: the client keeps the root it trusts.
			status = http.StatusNotFound
		}
		// go-tuf ends its root loop on this error with status 404.
		return nil, &metadata.ErrDownloadHTTP{StatusCode: status, URL: urlPath}
	}
	// Read into a buffer of the announced size when it is within the cap:
	// io.ReadAll's doubling would allocate about twice a large role.
	buf := bytes.NewBuffer(nil)
	if n := resp.ContentLength; n > 0 && n <= maxLength {
		buf.Grow(int(n) + 1)
	}
	_, err = io.Copy(buf, io.LimitReader(resp.Body, maxLength+1))
	data := buf.Bytes()
	f.mu.Lock()
	f.bytes += int64(len(data))
	f.mu.Unlock()
	if err != nil {
		return nil, f.netErr(ctx, role, urlPath, err)
	}
	if int64(len(data)) > maxLength {
		return nil, &Error{Category: ErrTooLarge, Role: role, Detail: fmt.Sprintf("%s is longer than %d bytes", urlPath, maxLength),
			Err: &metadata.ErrDownloadLengthMismatch{Msg: "download exceeds maximum length"}}
	}
	return data, nil
}

func (f *fetcher) netErr(ctx context.Context, role, urlPath string, err error) error {
	if ctx.Err() != nil || isTimeout(err) {
		why := fmt.Sprintf("%s: no complete answer within %s", urlPath, f.timeout)
		if f.ctx.Err() != nil {
			why = fmt.Sprintf("%s: the caller's deadline passed", urlPath)
		}
		return &Error{Category: ErrTimeout, Role: role, Detail: why, Err: err}
	}
	return &Error{Category: ErrUnavailable, Role: role, Detail: urlPath, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// roleOfURL returns the role and version a metadata URL names:
// ".../3.root.json" → ("root", 3), ".../timestamp.json" → ("timestamp", 0).
func roleOfURL(u string) (string, int64) {
	base := path.Base(u)
	if p, err := url.Parse(u); err == nil {
		base = path.Base(p.Path)
	}
	base = strings.TrimSuffix(base, ".json")
	var version int64
	if v, rest, ok := strings.Cut(base, "."); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			version, base = n, rest
		}
	}
	if r, err := url.PathUnescape(base); err == nil {
		base = r
	}
	return base, version
}
