package logserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// maxAnswerSize bounds an answer read from a server: a page of MaxLimit
// records of at most a log entry each, with their proofs.
const maxAnswerSize = MaxLimit*(2*tlog.MaxEntrySize) + 1<<20

// Client talks to a log server and verifies every answer with the log's
// public key: the checkpoint's signature and that it extends every
// checkpoint the client saw before (tlog.ErrRollback, tlog.ErrConsistency),
// each record's inclusion proof (tlog.ErrInclusion), and that each record
// is what was asked for (ErrAnswer). A server can still leave results out
// of a search; Audit finds that. A Client is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
	log  *tlog.Client
	// witnesses is the policy of WithWitnesses (nil: none), also applied
	// to gossiped checkpoints.
	witnesses *witness.Policy
}

// ClientOption configures a Client (WithWitnesses).
type ClientOption func(*Client)

// MaxConnsPerHost is how many connections to one log server a client of
// HTTPClient keeps open and idle: enough for every Put a controller replica
// has in flight (its workers times the links of a run) to reuse one.
const MaxConnsPerHost = 64

// NewTransport returns the HTTP transport clients of a log server should
// use: http.DefaultTransport's settings (proxy from the environment, dial
// and TLS handshake timeouts, HTTP/2 when offered) with up to
// MaxConnsPerHost idle connections per host instead of 2. Every append
// waits for a checkpoint (about 100 ms), so many are in flight at once;
// with the default of 2 idle connections all but two of them were closed
// after each answer and dialled again for the next (a TCP and, over
// https, a TLS handshake per Put).
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * MaxConnsPerHost
	t.MaxIdleConnsPerHost = MaxConnsPerHost
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// HTTPClient returns an http.Client on NewTransport whose requests time
// out after timeout (0: none).
func HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: NewTransport(), Timeout: timeout}
}

// defaultHTTP is the client of NewClient(…, nil): one transport, so one
// pool of connections, for every such client in the process.
var defaultHTTP = HTTPClient(0)

// NewClient returns a client of the server at base (http://host:port/),
// whose log's key is v. hc may be nil: a client on NewTransport, shared
// by every Client made with nil.
func NewClient(base string, v note.Verifier, hc *http.Client, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("log server URL %q: want http(s)://host[:port]/", base)
	}
	if hc == nil {
		hc = defaultHTTP
	}
	f, err := tclient.NewHTTPFetcher(u.JoinPath("/"), hc)
	if err != nil {
		return nil, err
	}
	c := &Client{base: u, hc: hc, log: tlog.NewClientFrom(f, v)}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Log is the verifying reader of the server's tiles (its largest verified
// checkpoint is the rollback floor for every answer).
func (c *Client) Log() *tlog.Client { return c.log }

// Verified is a verified answer for one document.
type Verified struct {
	Index      uint64
	Entry      store.Entry
	Checkpoint tlog.Checkpoint
	Answer     Answer
	// Created is true when the server appended the document for this
	// request (HTTP 201).
	Created bool
}

// Add posts doc and verifies the answer: a record of exactly doc, included
// in the answer's checkpoint.
func (c *Client) Add(ctx context.Context, doc []byte) (Verified, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath("v1", "entries").String(), bytes.NewReader(doc))
	if err != nil {
		return Verified{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var a Answer
	status, err := c.do(req, &a)
	if err != nil {
		return Verified{}, err
	}
	v, err := c.VerifyAnswer(ctx, a, store.Digest(doc))
	v.Created = status == http.StatusCreated
	return v, err
}

// Get returns the document with digest and its verified proof.
func (c *Client) Get(ctx context.Context, digest string) (Verified, error) {
	if !store.ValidDigest(digest) {
		return Verified{}, fmt.Errorf("%w: %q is not sha256:<64 hex>", ErrDocument, digest)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.JoinPath("v1", "entries", digest).String(), nil)
	if err != nil {
		return Verified{}, err
	}
	var a Answer
	if _, err := c.do(req, &a); err != nil {
		return Verified{}, err
	}
	return c.VerifyAnswer(ctx, a, digest)
}

// VerifyAnswer checks an answer for the document with digest.
func (c *Client) VerifyAnswer(ctx context.Context, a Answer, digest string) (Verified, error) {
	if a.Digest != digest {
		return Verified{}, fmt.Errorf("%w: asked for %s, the answer is about %s", ErrAnswer, digest, a.Digest)
	}
	cp, err := c.checkpoint(ctx, a.Checkpoint, 0)
	if err != nil {
		return Verified{}, fmt.Errorf("answer for %s: %w", digest, err)
	}
	if err := tlog.VerifyInclusionProof(a.Record, a.Index, cp, a.Hashes); err != nil {
		return Verified{}, fmt.Errorf("answer for %s: %w", digest, err)
	}
	e, _, err := tlogstore.ParseRecord(a.Record)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: answer for %s: log entry %d: %w", ErrAnswer, digest, a.Index, err)
	}
	if e.Digest != digest || e.Data == nil {
		return Verified{}, fmt.Errorf("%w: asked for %s, log entry %d holds %s", ErrAnswer, digest, a.Index, e.Digest)
	}
	return Verified{Index: a.Index, Entry: e, Checkpoint: cp, Answer: a}, nil
}

// Page is one verified page of a search.
type Page struct {
	Checkpoint tlog.Checkpoint
	Results    []VerifiedResult
	// Next is where the next page starts: after the last result when More,
	// else the checkpoint's size (later pages then find only newer entries).
	Next uint64
	More bool
}

// VerifiedResult is one verified search result.
type VerifiedResult struct {
	Index uint64
	Entry store.Entry
}

// Search asks for one page of entries matching q from log index from on
// and verifies it: the checkpoint, every result's inclusion, that every
// result matches q, and that results are in increasing log index order at
// or after from. limit 0 is the server's default.
func (c *Client) Search(ctx context.Context, q Query, from uint64, limit int) (Page, error) {
	v := url.Values{}
	if q.Subject != "" {
		v.Set("subject", q.Subject)
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.RunID != "" {
		v.Set("run", q.RunID)
	}
	if from > 0 {
		v.Set("cursor", FormatCursor(from))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	u := c.base.JoinPath("v1", "search")
	u.RawQuery = v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Page{}, err
	}
	var a SearchAnswer
	if _, err := c.do(req, &a); err != nil {
		return Page{}, err
	}
	return c.VerifySearch(ctx, a, q, from, limit)
}

// VerifySearch checks a search answer for q from from on (see Search).
func (c *Client) VerifySearch(ctx context.Context, a SearchAnswer, q Query, from uint64, limit int) (Page, error) {
	cp, err := c.checkpoint(ctx, a.Checkpoint, from)
	if err != nil {
		return Page{}, fmt.Errorf("search for %s: %w", q, err)
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	if len(a.Results) > limit {
		return Page{}, fmt.Errorf("%w: search for %s: %d results, asked for at most %d", ErrAnswer, q, len(a.Results), limit)
	}
	p := Page{Checkpoint: cp, More: a.More, Results: make([]VerifiedResult, 0, len(a.Results))}
	next := from
	for _, r := range a.Results {
		if r.Index < next {
			return Page{}, fmt.Errorf("%w: search for %s: log entry %d out of order (expected %d or later)", ErrAnswer, q, r.Index, next)
		}
		if err := tlog.VerifyInclusionProof(r.Record, r.Index, cp, r.Hashes); err != nil {
			return Page{}, fmt.Errorf("search for %s: %w", q, err)
		}
		e, complete, err := tlogstore.ParseRecord(r.Record)
		if err != nil {
			return Page{}, fmt.Errorf("%w: search for %s: log entry %d: %w", ErrAnswer, q, r.Index, err)
		}
		if !complete || !q.matches(e) {
			return Page{}, fmt.Errorf("%w: search for %s: log entry %d (%s %q, %s, run %q) does not match it", ErrAnswer, q, r.Index, e.Kind, e.Name, e.Digest, e.RunID)
		}
		p.Results = append(p.Results, VerifiedResult{Index: r.Index, Entry: e})
		next = r.Index + 1
	}
	switch {
	case a.More && len(p.Results) == 0:
		return Page{}, fmt.Errorf("%w: search for %s: an empty page that claims more results", ErrAnswer, q)
	case a.More:
		p.Next = next
	default:
		p.Next = max(cp.Size, from)
	}
	return p, nil
}

// checkpoint verifies an answer's checkpoint: signed by the log's key,
// and either extending every checkpoint this client saw or an older tree
// that the newest one provably extends (concurrent calls of one client can
// get answers built on checkpoints in any order, and a proof of inclusion
// in a prefix of the tree is one in the tree). A tree smaller than floor
// (the cursor of a search page: the client knows the log had that many
// entries) is tlog.ErrRollback.
func (c *Client) checkpoint(ctx context.Context, raw []byte, floor uint64) (tlog.Checkpoint, error) {
	cp, err := c.log.VerifyCheckpoint(ctx, raw)
	if errors.Is(err, tlog.ErrRollback) && !errors.Is(err, tlog.ErrFork) {
		latest, ok := c.log.Latest()
		older, perr := tlog.ParseCheckpoint(raw, c.log.Verifier())
		if !ok || perr != nil {
			return tlog.Checkpoint{}, err
		}
		if cerr := c.log.VerifyConsistency(ctx, older, latest); cerr != nil {
			return tlog.Checkpoint{}, cerr
		}
		cp, err = older, nil
	}
	if err != nil {
		return tlog.Checkpoint{}, err
	}
	if cp.Size < floor {
		return tlog.Checkpoint{}, fmt.Errorf("%w: tree of %d entries (%s) for a page that starts at log entry %d", tlog.ErrRollback, cp.Size, cp, floor)
	}
	return cp, nil
}

// SearchAll calls fn with every verified result of q from log index from
// on, page after page, and returns where a later search should resume.
func (c *Client) SearchAll(ctx context.Context, q Query, from uint64, limit int, fn func(VerifiedResult) error) (uint64, error) {
	for {
		p, err := c.Search(ctx, q, from, limit)
		if err != nil {
			return from, err
		}
		for _, r := range p.Results {
			if err := fn(r); err != nil {
				return from, err
			}
		}
		from = p.Next
		if !p.More {
			return from, nil
		}
	}
}

// do sends req and decodes a JSON answer into v; an error status is the
// sentinel of its status with the server's message.
func (c *Client) do(req *http.Request, v any) (int, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var eb errorBody
		msg := string(body)
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return resp.StatusCode, fmt.Errorf("%w: %s %s: HTTP %d: %s", errorOf(resp.StatusCode), req.Method, req.URL.Path, resp.StatusCode, msg)
	}
	if len(body) > maxAnswerSize {
		return resp.StatusCode, fmt.Errorf("%w: %s %s: answer larger than %d bytes", ErrAnswer, req.Method, req.URL.Path, maxAnswerSize)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %s %s: %w", ErrAnswer, req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, nil
}

func errorOf(status int) error {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return ErrDocument
	case http.StatusForbidden:
		return ErrNotAllowed
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusServiceUnavailable:
		return ErrBusy
	}
	return ErrUnavailable
}
