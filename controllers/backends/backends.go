package backends

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Backend is one opened backend; every backend must accept every entry. A
// backend is a Store, or an ImageAttacher, which is given the provenance of
// a run that produced images.
type Backend struct {
	Name   string
	Store  store.Store
	Images ImageAttacher
}

// ImageAttacher attaches a signed statement envelope (provenance, a VSA) to an image
// ("repository@sha256:<hex>") among its subjects.
type ImageAttacher interface {
	Attach(ctx context.Context, image string, env *dsse.Envelope) error
}

// OCI is the "oci" backend's ImageAttacher: pkg/oci's Attest (cosign's .att
// tag and an OCI 1.1 referrer), with the default keychain. Insecure allows
// plain HTTP, which pkg/oci allows for loopback registries only (tests). One
// OCI is opened per reconcile and makes one oci.Client, on first use, for
// every image it attaches to (connections and credentials reused).
type OCI struct {
	Insecure bool

	once   sync.Once
	client *oci.Client
	err    error
}

// Attach implements ImageAttacher.
func (a *OCI) Attach(ctx context.Context, image string, env *dsse.Envelope) error {
	a.once.Do(func() {
		var opts []oci.Option
		if a.Insecure {
			opts = append(opts, oci.WithInsecure())
		}
		a.client, a.err = oci.New(opts...)
	})
	if a.err != nil {
		return a.err
	}
	ref, err := a.client.ParseDigest(image)
	if err != nil {
		return err
	}
	// The statement's own predicate type: provenance, or a VSA.
	return a.client.Attest(ctx, ref, env, "")
}

// Stores holds a process's open stores by directory, for the TaskRun and
// PipelineRun controllers alike: a tlog directory can be opened once per
// process (tlogstore locks it), and one directory store per path serialises
// its writers. The zero value is empty and ready; Close closes what it
// opened.
type Stores struct {
	mu   sync.Mutex
	dirs map[string]*dirstore.Store
	logs map[string]*tlogstore.Store
	// pgLogs are the logs of postgres stores by directory, pgs the stores
	// by DSN file and log directory.
	pgLogs map[string]*tlog.Log
	pgs    map[[2]string]pgOpen
}

// Dir opens (once per Stores) the directory store at path.
func (o *Stores) Dir(path string) (*dirstore.Store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.dirs[path]; ok {
		return s, nil
	}
	s, err := dirstore.Open(path)
	if err != nil {
		return nil, err
	}
	if o.dirs == nil {
		o.dirs = map[string]*dirstore.Store{}
	}
	o.dirs[path] = s
	return s, nil
}

// Log opens (once per Stores) the transparency-log store in dir. Its
// checkpoint key is keyFile, or dir/log.key, generated on first use (0600,
// its public half in dir/log.pub for verifiers) for a log named origin.
func (o *Stores) Log(ctx context.Context, dir, keyFile, origin string) (*tlogstore.Store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.logs[dir]; ok {
		return s, nil
	}
	if _, ok := o.pgLogs[filepath.Join(dir, "log")]; ok {
		return nil, fmt.Errorf("the log in %s is the postgres backend's: one process appends to a log through one handle", dir)
	}
	key, err := logKey(dir, keyFile, origin)
	if err != nil {
		return nil, err
	}
	// The store outlives the reconcile that opened it: not ctx's deadline.
	s, err := tlogstore.Open(context.WithoutCancel(ctx), dir, key, nil)
	if err != nil {
		return nil, err
	}
	if o.logs == nil {
		o.logs = map[string]*tlogstore.Store{}
	}
	o.logs[dir] = s
	return s, nil
}

// logKey reads keyFile, or dir/log.key, generated on first use (0600, its
// public half in dir/log.pub) for a log named origin.
func logKey(dir, keyFile, origin string) (tlog.Key, error) {
	if keyFile == "" {
		keyFile = filepath.Join(dir, "log.key")
		if _, err := os.Stat(keyFile); os.IsNotExist(err) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return tlog.Key{}, err
			}
			if _, err := tlog.WriteKeyFiles(keyFile, filepath.Join(dir, "log.pub"), origin); err != nil {
				return tlog.Key{}, err
			}
		}
	}
	return tlog.ReadKey(keyFile)
}

// Served returns the store of the log served at url (`stepseal log serve`),
// whose public note key is in keyFile (read on every call: a rotated key
// reaches the next reconcile): every Put is posted and its answer verified
// (index, checkpoint signed by the key, inclusion). The server must allow
// the controller's signing key. With witnessPolicy (a witness policy file,
// also read on every call), every checkpoint must carry the cosignatures it
// requires (witness.ErrNotWitnessed otherwise). Stateless, so nothing is
// kept open.
func (o *Stores) Served(url, keyFile, witnessPolicy string) (*logserver.Remote, error) {
	c, _, err := servedClient(url, keyFile, witnessPolicy)
	if err != nil {
		return nil, err
	}
	return &logserver.Remote{Client: c}, nil
}

// servedClient is a verifying client of the log served at url, whose
// public note key is in keyFile, with the witness policy in witnessPolicy
// when it is not "". It also returns the digest of the two files' content.
func servedClient(url, keyFile, witnessPolicy string) (*logserver.Client, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if url == "" {
		return nil, sum, errors.New("no log server URL")
	}
	data, err := limited.ReadFile(keyFile, 16<<10)
	if err != nil {
		return nil, sum, fmt.Errorf("log key: %w", err)
	}
	v, err := tlog.ParseVerifier(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, sum, fmt.Errorf("log key %s: %w", keyFile, err)
	}
	h := sha256.New()
	h.Write(data)
	var opts []logserver.ClientOption
	if witnessPolicy != "" {
		p, err := witness.ReadPolicy(witnessPolicy)
		if err != nil {
			return nil, sum, err
		}
		fmt.Fprint(h, "\x00", p)
		opts = append(opts, logserver.WithWitnesses(p))
	}
	c, err := logserver.NewClient(url, v, logserver.HTTPClient(30*time.Second), opts...)
	if err != nil {
		return nil, sum, err
	}
	copy(sum[:], h.Sum(nil))
	return c, sum, nil
}

// Postgres opens (once per Stores, DSN file, log directory and content of
// the file) the
// PostgreSQL store whose connection string is in dsnFile (a key of a
// mounted Secret: never the ConfigMap), bound to the transparency log in
// dir/log (opened once per directory; key as Log's). Every replica sharing
// the database must append to the same log with the same key: the log is
// the single sequencer (Tessera's POSIX driver on a volume the replicas
// share; its fcntl locks serialise appenders in separate processes).
// Errors name the file, never its content.
func (o *Stores) Postgres(ctx context.Context, dsnFile, dir, keyFile, origin string) (*pgstore.Store, error) {
	// Read on every call: a rotated Secret (a new password) reaches the
	// mounted file, and the next reconcile connects with it.
	raw, err := os.ReadFile(dsnFile)
	if err != nil {
		return nil, fmt.Errorf("connection string: %w", err)
	}
	dsn := strings.TrimSpace(string(raw))
	if dsn == "" {
		return nil, fmt.Errorf("connection string file %s is empty", dsnFile)
	}
	sum := sha256.Sum256([]byte(dsn))
	o.mu.Lock()
	defer o.mu.Unlock()
	id := [2]string{dsnFile, dir}
	old, had := o.pgs[id]
	if had && old.dsn == sum {
		return old.s, nil
	}
	if _, ok := o.logs[dir]; ok {
		return nil, fmt.Errorf("the log in %s is the tlog backend's: give the postgres backend its own log directory", dir)
	}
	logDir := filepath.Join(dir, "log")
	l, ok := o.pgLogs[logDir]
	if !ok {
		key, err := logKey(dir, keyFile, origin)
		if err != nil {
			return nil, err
		}
		// The log outlives the reconcile that opened it: not ctx's deadline.
		if l, err = tlog.Open(context.WithoutCancel(ctx), logDir, key, nil); err != nil {
			return nil, err
		}
		if o.pgLogs == nil {
			o.pgLogs = map[string]*tlog.Log{}
		}
		o.pgLogs[logDir] = l
	}
	// Connecting can take up to the connect timeout: not under the lock,
	// which every backend of every reconcile takes.
	o.mu.Unlock()
	s, err := pgstore.Open(ctx, dsn, l, nil)
	o.mu.Lock()
	if err != nil {
		return nil, fmt.Errorf("connection string from %s: %w", dsnFile, err)
	}
	return o.keepPG(ctx, id, sum, s), nil
}

// PostgresServed opens (once per Stores, DSN file, log URL, and content
// of the DSN, log key and witness policy files) the PostgreSQL store whose
// connection string is in dsnFile, bound to the log served at url (`stepseal
// log serve`; pgstore.OpenServed): every replica reaches the one sequencer
// over HTTP, with no shared volume. keyFile holds the served log's public
// note key; witnessPolicy, when not "", the cosignatures every checkpoint
// must carry. The server must allow the controller's signing key. Errors
// name the files, never the connection string.
func (o *Stores) PostgresServed(ctx context.Context, dsnFile, url, keyFile, witnessPolicy string) (*pgstore.Store, error) {
	raw, err := os.ReadFile(dsnFile)
	if err != nil {
		return nil, fmt.Errorf("connection string: %w", err)
	}
	dsn := strings.TrimSpace(string(raw))
	if dsn == "" {
		return nil, fmt.Errorf("connection string file %s is empty", dsnFile)
	}
	c, keySum, err := servedClient(url, keyFile, witnessPolicy)
	if err != nil {
		return nil, fmt.Errorf("served log %s: %w", url, err)
	}
	sum := sha256.Sum256(append([]byte(dsn+"\x00"), keySum[:]...))
	id := [2]string{dsnFile, "served:" + url}
	o.mu.Lock()
	defer o.mu.Unlock()
	if old, ok := o.pgs[id]; ok && old.dsn == sum {
		return old.s, nil
	}
	// Connecting can take up to the connect timeout: not under the lock.
	o.mu.Unlock()
	s, err := pgstore.OpenServed(ctx, dsn, c, nil)
	o.mu.Lock()
	if err != nil {
		return nil, fmt.Errorf("connection string from %s: %w", dsnFile, err)
	}
	return o.keepPG(ctx, id, sum, s), nil
}

// keepPG records s as the open postgres store id (opened from content
// whose digest is sum) and returns the store to use: one another reconcile
// opened meanwhile from the same content, else s. A store it replaces is
// closed once its Puts under way finish. o.mu is held.
func (o *Stores) keepPG(ctx context.Context, id [2]string, sum [sha256.Size]byte, s *pgstore.Store) *pgstore.Store {
	if cur, ok := o.pgs[id]; ok && cur.dsn == sum {
		_ = s.Close(ctx) // another reconcile opened it meanwhile
		return cur.s
	}
	old, had := o.pgs[id]
	if o.pgs == nil {
		o.pgs = map[[2]string]pgOpen{}
	}
	o.pgs[id] = pgOpen{s: s, dsn: sum}
	if had {
		// Puts under way finish on the old pool (Close waits for them);
		// later ones on it fail ErrUnavailable and are retried.
		go old.s.Close(context.WithoutCancel(ctx)) //nolint:errcheck // pgstore's Close returns nil
	}
	return s
}

// pgOpen is an open postgres store and the digest of its connection string.
type pgOpen struct {
	s   *pgstore.Store
	dsn [sha256.Size]byte
}

// Close closes every open store that holds resources (store.Closer: a
// tlog's lock and checkpointer) and forgets them all, so the next Dir or
// Log opens afresh. It returns every Close error, each naming its store.
func (o *Stores) Close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	closeAll := func(kind string, dir string, s store.Store) {
		if c, ok := s.(store.Closer); ok {
			if err := c.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("closing %s store %s: %w", kind, dir, err))
			}
		}
	}
	for dir, s := range o.dirs {
		closeAll("dir", dir, s)
	}
	for dir, s := range o.logs {
		closeAll("tlog", dir, s)
	}
	for id, p := range o.pgs {
		closeAll("postgres", id[0], p.s)
	}
	for dir, l := range o.pgLogs {
		if err := l.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing the postgres backend's log %s: %w", dir, err))
		}
	}
	o.dirs, o.logs, o.pgs, o.pgLogs = nil, nil, nil, nil
	return errors.Join(errs...)
}
