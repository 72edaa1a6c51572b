package settings

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/record"

	"github.com/stepseal/stepseal/pkg/signing"
)

// ConfigMapName is the name of the controller's ConfigMap.
const ConfigMapName = "stepseal-config"

// Keys of the ConfigMap. Keys starting with "_" (such as knative's
// "_example") are ignored; any other unknown key makes the ConfigMap invalid,
// so a typo is reported instead of silently ignored.
const (
	// KeyBackends is a comma-separated list of storage backends; every one
	// must accept the attestations before a TaskRun is marked signed.
	KeyBackends = "backends"
	// KeyStoreDir is the directory of the "dir" backend.
	KeyStoreDir = "storage.dir.path"
	// KeySignerSecret names the Secret (in the controller's namespace) with
	// cosign.key and cosign.password. A Secret named "<name>-<namespace>"
	// overrides it for TaskRuns of that namespace.
	KeySignerSecret = "signer.secret"
	// KeySignerKMS is a KMS key URI (sigstore's: awskms://, gcpkms://,
	// azurekms://, hashivault://) used instead of the signer.secret Secret.
	// "signer.kms.<namespace>" sets one for TaskRuns of that namespace.
	// For a namespace, the first that is set wins: signer.kms.<namespace>,
	// the Secret "<signer.secret>-<namespace>", signer.kms, the Secret
	// "<signer.secret>".
	KeySignerKMS = "signer.kms"
	// KeyMaxRetries is how many failed attempts mark a TaskRun signed=failed.
	KeyMaxRetries = "max-retries"
	// KeyRetryBaseDelay and KeyRetryMaxDelay bound the exponential backoff
	// between attempts (Go durations).
	KeyRetryBaseDelay = "retry.base-delay"
	KeyRetryMaxDelay  = "retry.max-delay"
	// KeyBuilderID is the SLSA builder.id of the provenance.
	KeyBuilderID = "builder.id"
	// KeyTLogDir is the directory of the "tlog" backend.
	KeyTLogDir = "storage.tlog.path"
	// KeyTLogKey is the file of the log's private checkpoint key (a note
	// key, e.g. a mounted Secret). Empty: DIR/log.key, generated on first
	// use with its public half in DIR/log.pub.
	KeyTLogKey = "storage.tlog.key"
	// KeyTLogOrigin names the log (first line of its checkpoints) when the
	// key is generated.
	KeyTLogOrigin = "storage.tlog.origin"
	// KeyPostgresDSNFile is the file holding the "postgres" backend's
	// connection string (a key of a Secret mounted into the controller's
	// Pod). The string itself, which may hold a password, never goes in the
	// ConfigMap: this is a path, and errors show neither it nor the file's
	// content.
	KeyPostgresDSNFile = "storage.postgres.dsn-file"
	// KeyPostgresLogDir is the directory of the "postgres" backend's
	// transparency log (DIR/log), which every replica appends to, and
	// KeyPostgresLogKey and KeyPostgresLogOrigin its key and name, as
	// KeyTLogKey and KeyTLogOrigin are the "tlog" backend's.
	KeyPostgresLogDir    = "storage.postgres.log.path"
	KeyPostgresLogKey    = "storage.postgres.log.key"
	KeyPostgresLogOrigin = "storage.postgres.log.origin"
	// KeyPostgresLogURL binds the "postgres" backend to a served log
	// (http(s)://host:port/ of `stepseal log serve`) instead of a log
	// directory: replicas on any node share the one sequencer over HTTP.
	// KeyPostgresLogPublicKey is the file holding that log's public note
	// key (a mounted ConfigMap key), and KeyPostgresLogWitnessPolicy a
	// witness policy file whose cosignatures every checkpoint must carry.
	// The URL excludes KeyPostgresLogDir, KeyPostgresLogKey and
	// KeyPostgresLogOrigin (a ConfigMap setting both is refused).
	KeyPostgresLogURL           = "storage.postgres.log.url"
	KeyPostgresLogPublicKey     = "storage.postgres.log.public-key"
	KeyPostgresLogWitnessPolicy = "storage.postgres.log.witness-policy"
	// KeyLogServerURL is the "logserver" backend's server
	// (http(s)://host:port/ of `stepseal log serve`), and KeyLogServerKey
	// the file holding that log's public note key (a mounted ConfigMap or
	// Secret key).
	KeyLogServerURL = "storage.logserver.url"
	KeyLogServerKey = "storage.logserver.key"
	// KeyLogServerWitnessPolicy is a file holding a witness policy (the
	// format of `stepseal log serve --witness-policy`; a mounted
	// ConfigMap key): when set, every checkpoint the backend accepts from
	// the server must carry the cosignatures it requires.
	KeyLogServerWitnessPolicy = "storage.logserver.witness-policy"
	// KeyOCIInsecure lets the "oci" backend use plain HTTP; pkg/oci allows
	// it for loopback registries only (tests).
	KeyOCIInsecure = "storage.oci.insecure"
	// KeyRekorURL is the "rekor" backend's Rekor v2 write URL
	// (http(s)://host[:port], POST /api/v2/log/entries), KeyRekorTilesURL
	// where that log's tiles are read (unset: the write URL), and
	// KeyRekorTrustedRoot the file holding the Sigstore trusted_root.json
	// that names the log (its key and origin; a mounted ConfigMap).
	KeyRekorURL         = "transparency.rekor.url"
	KeyRekorTilesURL    = "transparency.rekor.tiles-url"
	KeyRekorTrustedRoot = "transparency.rekor.trusted-root"
	// KeyRecordImages lists the stepseal images (by digest, comma-separated)
	// whose stepseal-record-start/stop steps the TaskRun controller trusts
	// to have measured a user's step. Unset: a TaskRun with such steps
	// cannot be checked (retried, then signed=failed).
	KeyRecordImages = "record.images"
)

// Backends: the names KeyBackends lists. BackendKinds is the table of what
// each one is, its settings and how it is opened.
const (
	// BackendDir is the directory store backend (pkg/store/dirstore).
	BackendDir = "dir"
	// BackendOCI attaches each TaskRun's provenance to the images it
	// produced (pkg/oci.Attest: cosign's .att tag and an OCI 1.1
	// referrer). It stores nothing queryable, so it needs a store backend
	// next to it.
	BackendOCI = "oci"
	// BackendTLog is the embedded transparency log (pkg/store/tlogstore):
	// every entry is appended to a Merkle log with signed checkpoints, and
	// runs get stepseal.dev/log-index.
	BackendTLog = "tlog"
	// BackendLogServer appends every entry to a served log
	// (pkg/logserver.Remote): replicas on any node share one sequencer over
	// HTTP, and every answer is verified with the log's key.
	BackendLogServer = "logserver"
	// BackendPostgres is the shared store on PostgreSQL (pkg/store/pgstore):
	// several controller replicas write to one database, each entry bound
	// to a record in a transparency log they share; runs get
	// stepseal.dev/log-index as with "tlog".
	BackendPostgres = "postgres"
	// BackendRekor logs the provenance of each image in a Rekor v2 log
	// (pkg/rekor, as Chains' transparency option) and attaches the
	// verified Sigstore bundle to the image as an OCI referrer. Like
	// "oci", it needs a store backend next to it.
	BackendRekor = "rekor"
)

// ErrInvalid: the ConfigMap cannot be used.
var ErrInvalid = errors.New("invalid stepseal-config")

// Config is the parsed ConfigMap. Treat it as immutable.
type Config struct {
	Backends   []string
	StoreDir   string
	TLogDir    string
	TLogKey    string
	TLogOrigin string
	// PostgresDSNFile, PostgresLogDir, PostgresLogKey and PostgresLogOrigin
	// configure the "postgres" backend.
	PostgresDSNFile   string
	PostgresLogDir    string
	PostgresLogKey    string
	PostgresLogOrigin string
	// PostgresLogURL, PostgresLogPublicKey and PostgresLogWitnessPolicy
	// bind the "postgres" backend to a served log instead.
	PostgresLogURL           string
	PostgresLogPublicKey     string
	PostgresLogWitnessPolicy string
	// LogServerURL and LogServerKey configure the "logserver" backend.
	LogServerURL string
	LogServerKey string
	// LogServerWitnessPolicy is the witness policy file ("" for none).
	LogServerWitnessPolicy string
	// RekorURL, RekorTilesURL and RekorTrustedRoot configure the "rekor"
	// backend.
	RekorURL         string
	RekorTilesURL    string
	RekorTrustedRoot string
	SignerSecret     string
	SignerKMS        string
	// NamespaceKMS maps a namespace to its signer.kms.<namespace> URI.
	NamespaceKMS   map[string]string
	MaxRetries     int
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	BuilderID      string
	OCIInsecure    bool
	// RecordImages are the digests ("sha256:<hex>") of record.images.
	RecordImages []string
	// Trust is where the TUF trust root comes from (trust.* keys).
	Trust Trust
	// VSA configures the verification summaries (vsa.* keys).
	VSA VSA
	// Refused is set, instead of any setting, while the only ConfigMap
	// seen was refused (Store.OnConfigChanged): the controller must not
	// sign with the defaults the ConfigMap meant to replace.
	Refused error
}

// Defaults is the Config of an empty or absent ConfigMap.
func Defaults() *Config {
	return &Config{
		Backends:   []string{BackendDir},
		StoreDir:   "/var/lib/stepseal/store",
		TLogDir:    "/var/lib/stepseal/tlog",
		TLogOrigin: "stepseal.dev/controller",
		// A Secret mounted there (500-controller.yaml).
		PostgresDSNFile:      "/etc/stepseal/postgres/dsn",
		PostgresLogDir:       "/var/lib/stepseal/pglog",
		PostgresLogOrigin:    "stepseal.dev/controller",
		PostgresLogPublicKey: "/etc/stepseal/postgres/log.pub",
		LogServerKey:         "/etc/stepseal/logserver/log.pub",
		RekorTrustedRoot:     "/etc/stepseal/rekor/trusted_root.json",
		SignerSecret:         "signing-secrets",
		MaxRetries:           10,
		RetryBaseDelay:       time.Second,
		RetryMaxDelay:        5 * time.Minute,
		BuilderID:            "https://stepseal.dev/controller",
		Trust:                defaultTrust(),
		VSA:                  defaultVSA(),
	}
}

// Backoff is the delay before attempt+1 after attempt (1-based) failed.
func (c *Config) Backoff(attempt int) time.Duration {
	d := c.RetryBaseDelay
	for i := 1; i < attempt && d < c.RetryMaxDelay; i++ {
		d *= 2
	}
	return min(d, c.RetryMaxDelay)
}

// Parse reads a ConfigMap's data over the defaults.
func Parse(data map[string]string) (*Config, error) {
	c := Defaults()
	var errs []string
	for _, k := range sortedKeys(data) {
		v := strings.TrimSpace(data[k])
		switch k {
		case KeyBackends:
			c.Backends = nil
			var known, stores []string
			for _, b := range BackendKinds() {
				known = append(known, b.Name)
				if b.Stores {
					stores = append(stores, b.Name)
				}
			}
			storing := false
			for _, b := range strings.Split(v, ",") {
				b = strings.TrimSpace(b)
				if b == "" {
					continue
				}
				kind, ok := LookupBackend(b)
				if !ok {
					errs = append(errs, fmt.Sprintf("%s: unknown backend %q (known: %s)", k, b, strings.Join(known, ", ")))
					continue
				}
				c.Backends = append(c.Backends, b)
				storing = storing || kind.Stores
			}
			if len(c.Backends) == 0 {
				errs = append(errs, fmt.Sprintf("%s: no backend: nothing could be stored", k))
			} else if !storing {
				errs = append(errs, fmt.Sprintf("%s: %q needs a store backend (%s) next to it", k, v, strings.Join(stores, " or ")))
			}
		case KeySignerKMS:
			if !signing.IsKMSURI(v) {
				errs = append(errs, fmt.Sprintf("%s: %q is not a KMS key URI (scheme://key)", k, v))
			}
			c.SignerKMS = v
		case KeySignerSecret:
			if v == "" {
				errs = append(errs, fmt.Sprintf("%s: empty", k))
			}
			c.SignerSecret = v
		case KeyMaxRetries:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Sprintf("%s: %q is not a positive integer", k, v))
			}
			c.MaxRetries = n
		case KeyRetryBaseDelay, KeyRetryMaxDelay:
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Sprintf("%s: %q is not a positive duration", k, v))
			}
			if k == KeyRetryBaseDelay {
				c.RetryBaseDelay = d
			} else {
				c.RetryMaxDelay = d
			}
		case KeyRecordImages:
			c.RecordImages = nil
			for _, ref := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
				_, d, _ := strings.Cut(ref, "@")
				if d == "" {
					d = ref
				}
				if !validImageDigest(d) {
					errs = append(errs, fmt.Sprintf("%s: %q names no image by sha256 digest (repo@sha256:<hex>)", k, ref))
					continue
				}
				c.RecordImages = append(c.RecordImages, d)
			}
		case KeyBuilderID:
			if v == "" {
				errs = append(errs, fmt.Sprintf("%s: empty", k))
			}
			c.BuilderID = v
		default:
			if ok, msg := trustSetting(c, k, v); ok {
				if msg != "" {
					errs = append(errs, fmt.Sprintf("%s: %s", k, msg))
				}
			} else if ok, msg := vsaSetting(c, k, v); ok {
				if msg != "" {
					errs = append(errs, fmt.Sprintf("%s: %s", k, msg))
				}
			} else if set, ok := backendSetting(k); ok {
				if msg := set(c, v); msg != "" {
					errs = append(errs, fmt.Sprintf("%s: %s", k, msg))
				}
			} else if ns, ok := strings.CutPrefix(k, KeySignerKMS+"."); ok {
				if errs1 := validation.IsDNS1123Label(ns); len(errs1) > 0 {
					errs = append(errs, fmt.Sprintf("%s: %q is not a namespace name", k, ns))
				}
				if !signing.IsKMSURI(v) {
					errs = append(errs, fmt.Sprintf("%s: %q is not a KMS key URI (scheme://key)", k, v))
				}
				if c.NamespaceKMS == nil {
					c.NamespaceKMS = map[string]string{}
				}
				c.NamespaceKMS[ns] = v
			} else if !strings.HasPrefix(k, "_") {
				errs = append(errs, fmt.Sprintf("unknown key %q", k))
			}
		}
	}
	if slices.Contains(c.Backends, BackendLogServer) && c.LogServerURL == "" {
		errs = append(errs, fmt.Sprintf("backend %s needs %s", BackendLogServer, KeyLogServerURL))
	}
	if slices.Contains(c.Backends, BackendRekor) && c.RekorURL == "" {
		errs = append(errs, fmt.Sprintf("backend %s needs %s", BackendRekor, KeyRekorURL))
	}
	if _, ok := data[KeyPostgresLogURL]; ok {
		for _, k := range []string{KeyPostgresLogDir, KeyPostgresLogKey, KeyPostgresLogOrigin} {
			if _, set := data[k]; set {
				errs = append(errs, fmt.Sprintf("%s and %s: the postgres backend's log is a served log or a log directory, not both", KeyPostgresLogURL, k))
			}
		}
	} else {
		for _, k := range []string{KeyPostgresLogPublicKey, KeyPostgresLogWitnessPolicy} {
			if _, set := data[k]; set {
				errs = append(errs, fmt.Sprintf("%s is a setting of a served log: it needs %s", k, KeyPostgresLogURL))
			}
		}
	}
	if slices.Contains(c.Backends, BackendTLog) && slices.Contains(c.Backends, BackendPostgres) && c.PostgresLogURL == "" && c.TLogDir == c.PostgresLogDir {
		errs = append(errs, fmt.Sprintf("%s and %s are both %s: the tlog and postgres backends need logs of their own", KeyTLogDir, KeyPostgresLogDir, c.TLogDir))
	}
	if msg := checkVSA(c); msg != "" {
		errs = append(errs, msg)
	}
	if msg := c.Trust.checkOnline(); msg != "" {
		errs = append(errs, msg)
	}
	if len(errs) == 0 && c.RetryBaseDelay > c.RetryMaxDelay {
		errs = append(errs, fmt.Sprintf("%s %v is larger than %s %v", KeyRetryBaseDelay, c.RetryBaseDelay, KeyRetryMaxDelay, c.RetryMaxDelay))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return c, nil
}

// Store holds the current Config. Its OnConfigChanged is the configmap
// watcher's callback for ConfigMapName.
type Store struct {
	logger   *zap.SugaredLogger
	recorder record.EventRecorder // may be nil
	cur      atomic.Pointer[Config]
	// loaded: a ConfigMap (or its absence) was accepted once.
	loaded atomic.Bool
}

// NewStore returns a Store holding Defaults. recorder, when not nil,
// receives a Warning Event on a ConfigMap that is refused.
func NewStore(logger *zap.SugaredLogger, recorder record.EventRecorder) *Store {
	s := &Store{logger: logger, recorder: recorder}
	s.cur.Store(Defaults())
	return s
}

// OnConfigChanged parses cm; a valid one replaces the current Config. An
// invalid one is logged and reported (a Warning Event on cm) and the last
// good Config stays; when no ConfigMap was ever accepted there is none,
// and the current Config becomes a Refused one: the controller then signs
// nothing (never with the default dir backend the ConfigMap meant to
// replace) until a valid ConfigMap arrives.
func (s *Store) OnConfigChanged(cm *corev1.ConfigMap) {
	c, err := Parse(cm.Data)
	if err != nil {
		what := "keeping the last good configuration"
		if !s.loaded.Load() {
			what = "no configuration was accepted yet: signing nothing until stepseal-config is fixed"
			r := Defaults()
			r.Refused = fmt.Errorf("stepseal-config refused: %w", err)
			s.cur.Store(r)
		}
		s.logger.Errorw(what, zap.Error(err))
		if s.recorder != nil {
			s.recorder.Eventf(cm, corev1.EventTypeWarning, "InvalidConfig", "%v; %s", err, what)
		}
		return
	}
	s.cur.Store(c)
	s.loaded.Store(true)
	s.logger.Infow("configuration loaded", "backends", c.Backends, "storeDir", c.StoreDir,
		"signerSecret", c.SignerSecret, "maxRetries", c.MaxRetries)
}

// Load returns the current Config.
func (s *Store) Load() *Config { return s.cur.Load() }

type ctxKey struct{}

// ToContext attaches the current Config to ctx, so one reconcile sees one Config.
func (s *Store) ToContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, s.Load())
}

// FromContext returns the Config attached by ToContext, or Defaults.
func FromContext(ctx context.Context) *Config {
	if c, ok := ctx.Value(ctxKey{}).(*Config); ok {
		return c
	}
	return Defaults()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func validImageDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	return ok && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}
