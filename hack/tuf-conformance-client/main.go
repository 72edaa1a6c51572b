// Command tuf-conformance-client speaks the TUF conformance suite's
// client-under-test protocol with stepseal's TUF client (pkg/trust), guards
// and delegation rules included, so that the suite tests the client
// stepseal ships rather than go-tuf alone:
//
//	tuf-conformance-client --metadata-dir DIR init TRUSTED_ROOT
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL refresh
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL \
//	    --target-name PATH [--target-name PATH…] --target-base-url URL \
//	    --target-dir DIR download
//
// Exit code 0 when the command succeeded fully, 1 otherwise (a usage
// error included). DIR holds the trusted metadata under unversioned names
// (root.json, timestamp.json, …, <role>.json): it is the client's cache.
// Downloaded artifacts are stored in the target directory under their
// target path, path-escaped into one file name; one already there with the
// length and sha256 its role vouches for is not downloaded again.
//
// The conformance suite changes the client's clock with the faketime tool,
// which a Go binary does not see (it does not read the clock through
// libc): the client reads the FAKETIME variable that tool sets instead, an
// absolute time ("2025-02-09 12:02:08", optionally after "@") or an offset
// from now ("+2d", "-90m"; s, m, h, d or y). STEPSEAL_CONFORMANCE_NOW (RFC
// 3339) overrides both.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stepseal/stepseal/pkg/trust"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stderr, time.Now)
	stop()
	os.Exit(code)
}

type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

type options struct {
	metadataDir, metadataURL, targetBaseURL, targetDir string
	targets                                            names
	log                                                io.Writer
	now                                                func() time.Time
}

// run executes one command and returns the process's exit code.
func run(ctx context.Context, args []string, log io.Writer, now func() time.Time) int {
	fs := flag.NewFlagSet("tuf-conformance-client", flag.ContinueOnError)
	fs.SetOutput(log)
	o := options{log: log}
	fs.StringVar(&o.metadataDir, "metadata-dir", "", "trusted metadata directory")
	fs.StringVar(&o.metadataURL, "metadata-url", "", "repository metadata URL")
	fs.Var(&o.targets, "target-name", "target path to download (repeatable)")
	fs.StringVar(&o.targetBaseURL, "target-base-url", "", "repository targets URL")
	fs.StringVar(&o.targetDir, "target-dir", "", "directory for downloaded targets")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	clock, err := clockFrom(now)
	if err != nil {
		fmt.Fprintln(log, "error:", err)
		return 1
	}
	o.now = clock
	rest := fs.Args()
	if len(rest) == 0 || o.metadataDir == "" {
		fmt.Fprintln(log, "usage: --metadata-dir DIR [--metadata-url URL] [--target-name PATH --target-base-url URL --target-dir DIR] init ROOT | refresh | download")
		return 1
	}
	switch cmd := rest[0]; {
	case cmd == "init" && len(rest) == 2:
		err = initDir(o, rest[1])
	case cmd == "refresh" && len(rest) == 1 && o.metadataURL != "":
		_, err = refresh(ctx, o)
	case cmd == "download" && len(rest) == 1 && o.metadataURL != "" && len(o.targets) > 0 && o.targetBaseURL != "" && o.targetDir != "":
		err = download(ctx, o)
	default:
		fmt.Fprintf(log, "error: unknown command or missing arguments: %q\n", rest)
		return 1
	}
	if err != nil {
		fmt.Fprintln(log, "error:", err)
		return 1
	}
	fmt.Fprintln(log, "ok:", rest[0])
	return 0
}

// clockFrom returns the clock the client checks expiry against.
func clockFrom(now func() time.Time) (func() time.Time, error) {
	if v := os.Getenv("STEPSEAL_CONFORMANCE_NOW"); v != "" {
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, fmt.Errorf("STEPSEAL_CONFORMANCE_NOW: %v", err)
		}
		return func() time.Time { return at }, nil
	}
	v := strings.TrimSpace(os.Getenv("FAKETIME"))
	if v == "" {
		return now, nil
	}
	if v[0] == '+' || v[0] == '-' {
		d, err := parseOffset(v)
		if err != nil {
			return nil, fmt.Errorf("FAKETIME %q: %v", v, err)
		}
		return func() time.Time { return now().Add(d) }, nil
	}
	at, err := time.ParseInLocation("2006-01-02 15:04:05", strings.TrimPrefix(v, "@"), time.Local)
	if err != nil {
		return nil, fmt.Errorf("FAKETIME %q: want \"YYYY-MM-DD hh:mm:ss\" or an offset like +2d", v)
	}
	start := now()
	// "@" starts the clock at the time given; without it the clock stands
	// still. A command lasts seconds, so the difference hardly matters.
	if strings.HasPrefix(v, "@") {
		return func() time.Time { return at.Add(now().Sub(start)) }, nil
	}
	return func() time.Time { return at }, nil
}

func parseOffset(v string) (time.Duration, error) {
	unit := time.Second
	num := v
	switch v[len(v)-1] {
	case 's':
		num = v[:len(v)-1]
	case 'm':
		unit, num = time.Minute, v[:len(v)-1]
	case 'h':
		unit, num = time.Hour, v[:len(v)-1]
	case 'd':
		unit, num = 24*time.Hour, v[:len(v)-1]
	case 'y':
		unit, num = 365*24*time.Hour, v[:len(v)-1]
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n > 1e5 || n < -1e5 {
		return 0, errors.New("not an offset like +2d")
	}
	return time.Duration(n * float64(unit)), nil
}

// initDir makes the trusted root the client's: it is copied as root.json
// into the metadata directory (the protocol expects no check here; the
// client's guard checks it at the first refresh, and the cache's root.json
// is the trusted root from then on).
func initDir(o options, rootFile string) error {
	data, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.metadataDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.metadataDir, "root.json"), data, 0o600)
}

func newClient(ctx context.Context, o options) (*trust.Client, error) {
	return trust.NewClient(ctx, trust.ClientOptions{
		Source: o.metadataURL, CacheDir: o.metadataDir, Now: o.now, FileTimeout: 30 * time.Second,
	})
}

// refresh runs stepseal's TUF client workflow: the metadata directory is
// written only when everything verified.
func refresh(ctx context.Context, o options) (*trust.Client, error) {
	c, err := newClient(ctx, o)
	if err != nil {
		return nil, err
	}
	ch, err := c.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.log, "refreshed: %+v\n", *ch)
	return c, nil
}

// download refreshes, then fetches, verifies and stores each target in
// order with the same client, stopping at the first failure.
func download(ctx context.Context, o options) error {
	c, err := refresh(ctx, o)
	if err != nil {
		return err
	}
	consistent, err := consistentSnapshot(o.metadataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.targetDir, 0o700); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Minute}
	for _, name := range o.targets {
		if err := downloadOne(ctx, c, hc, o, name, consistent); err != nil {
			return fmt.Errorf("target %q: %w", name, err)
		}
	}
	return nil
}

func downloadOne(ctx context.Context, c *trust.Client, hc *http.Client, o options, name string, consistent bool) error {
	r, err := c.Resolve(ctx, name)
	if err != nil {
		return err
	}
	file := url.PathEscape(name)
	if file == "." || file == ".." || strings.HasPrefix(file, ".tmp-") {
		return fmt.Errorf("target path %q cannot be stored as a file name", name)
	}
	local := filepath.Join(o.targetDir, file)
	if data, err := os.ReadFile(local); err == nil {
		sum := sha256.Sum256(data)
		if _, err := c.VerifyArtifact(ctx, name, hex.EncodeToString(sum[:]), int64(len(data))); err == nil {
			fmt.Fprintf(o.log, "%s: cached (%s v%d)\n", name, r.Role, r.RoleVersion)
			return nil
		}
	}
	u := strings.TrimSuffix(o.targetBaseURL, "/") + "/" + name
	if consistent {
		dir, base := path.Split(name)
		u = strings.TrimSuffix(o.targetBaseURL, "/") + "/" + dir + r.SHA256 + "." + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.Length+1))
	if err != nil {
		return err
	}
	if int64(len(data)) > r.Length {
		return fmt.Errorf("GET %s: longer than the %d bytes %s vouches for", u, r.Length, r.Role)
	}
	sum := sha256.Sum256(data)
	if _, err := c.VerifyArtifact(ctx, name, hex.EncodeToString(sum[:]), int64(len(data))); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(o.targetDir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return err
	}
	fmt.Fprintf(o.log, "%s: downloaded %d bytes (%s v%d)\n", name, len(data), r.Role, r.RoleVersion)
	return nil
}

// consistentSnapshot reads consistent_snapshot from the trusted root the
// refresh just verified and wrote.
func consistentSnapshot(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return false, err
	}
	var root struct {
		Signed struct {
			ConsistentSnapshot bool `json:"consistent_snapshot"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return false, err
	}
	return root.Signed.ConsistentSnapshot, nil
}
