package settings

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/stepseal/stepseal/controllers/backends"
)

// BackendKind is one row of the table of storage backends (BackendKinds):
// the name the backends key lists, what the backend can do, the ConfigMap
// keys of its settings and how it is opened. Parse and the reconcilers
// read this one table, so a backend is added in one place.
type BackendKind struct {
	// Name is what KeyBackends lists.
	Name string
	// Stores: the backend is a store.Store, which keeps every entry for
	// verifiers; a configuration needs at least one such backend.
	Stores bool
	// AttachesImages: the backend is a backends.ImageAttacher, given the
	// provenance of every run that produced images.
	AttachesImages bool
	// Settings are the ConfigMap keys of the backend's settings, each with
	// how a value is checked and set in a Config: it returns what is wrong
	// with v, "" when v is valid. A key is parsed whether or not the
	// backend is listed.
	Settings map[string]func(c *Config, v string) string
	// Open opens the backend as c configures it, through stores (the
	// process's open stores); its errors name the backend.
	Open func(ctx context.Context, c *Config, stores *backends.Stores) (backends.Backend, error)
}

// BackendKinds returns the table of backends, in the order error messages
// list them.
func BackendKinds() []BackendKind {
	return []BackendKind{
		{
			Name:     BackendDir,
			Stores:   true,
			Settings: map[string]func(*Config, string) string{KeyStoreDir: absolutePath(func(c *Config, v string) { c.StoreDir = v })},
			Open: func(_ context.Context, c *Config, stores *backends.Stores) (backends.Backend, error) {
				ds, err := stores.Dir(c.StoreDir)
				if err != nil {
					return backends.Backend{}, fmt.Errorf("backend dir: %w", err)
				}
				return backends.Backend{Name: "dir:" + c.StoreDir, Store: ds}, nil
			},
		},
		{
			Name:   BackendTLog,
			Stores: true,
			Settings: map[string]func(*Config, string) string{
				KeyTLogDir: absolutePath(func(c *Config, v string) { c.TLogDir = v }),
				KeyTLogKey: absolutePath(func(c *Config, v string) { c.TLogKey = v }),
				KeyTLogOrigin: func(c *Config, v string) string {
					c.TLogOrigin = v
					if v == "" || strings.ContainsAny(v, " +\n\t") {
						return fmt.Sprintf("%q is not a log name (no spaces or '+')", v)
					}
					return ""
				},
			},
			Open: func(ctx context.Context, c *Config, stores *backends.Stores) (backends.Backend, error) {
				ls, err := stores.Log(ctx, c.TLogDir, c.TLogKey, c.TLogOrigin)
				if err != nil {
					return backends.Backend{}, fmt.Errorf("backend tlog %s: %w", c.TLogDir, err)
				}
				return backends.Backend{Name: "tlog:" + c.TLogDir, Store: ls}, nil
			},
		},
		{
			Name:   BackendPostgres,
			Stores: true,
			Settings: map[string]func(*Config, string) string{
				// The value is a path; still, never echo it (a DSN pasted
				// here by mistake would reach logs and Events).
				KeyPostgresDSNFile: func(c *Config, v string) string {
					c.PostgresDSNFile = v
					// A connection string never starts with "/" (neither
					// key=value pairs nor a postgres:// URL), so any absolute
					// path is one, '=' and '@' included; whitespace is not.
					if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\n") || strings.Contains(v, "://") {
						return "not an absolute file path (value not shown: it may be a connection string; put that in a Secret and name the mounted file here)"
					}
					return ""
				},
				KeyPostgresLogDir: absolutePath(func(c *Config, v string) { c.PostgresLogDir = v }),
				KeyPostgresLogURL: func(c *Config, v string) string {
					c.PostgresLogURL = v
					u, err := url.Parse(v)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
						return fmt.Sprintf("%q is not a log server URL (http(s)://host[:port]/)", v)
					}
					return ""
				},
				KeyPostgresLogPublicKey:     absolutePath(func(c *Config, v string) { c.PostgresLogPublicKey = v }),
				KeyPostgresLogWitnessPolicy: absolutePath(func(c *Config, v string) { c.PostgresLogWitnessPolicy = v }),
				KeyPostgresLogKey:           absolutePath(func(c *Config, v string) { c.PostgresLogKey = v }),
				KeyPostgresLogOrigin: func(c *Config, v string) string {
					c.PostgresLogOrigin = v
					if v == "" || strings.ContainsAny(v, " +\n\t") {
						return fmt.Sprintf("%q is not a log name (no spaces or '+')", v)
					}
					return ""
				},
			},
			Open: func(ctx context.Context, c *Config, stores *backends.Stores) (backends.Backend, error) {
				if c.PostgresLogURL != "" {
					ps, err := stores.PostgresServed(ctx, c.PostgresDSNFile, c.PostgresLogURL, c.PostgresLogPublicKey, c.PostgresLogWitnessPolicy)
					if err != nil {
						return backends.Backend{}, fmt.Errorf("backend postgres (served log %s): %w", c.PostgresLogURL, err)
					}
					return backends.Backend{Name: "postgres+logserver:" + c.PostgresLogURL, Store: ps}, nil
				}
				ps, err := stores.Postgres(ctx, c.PostgresDSNFile, c.PostgresLogDir, c.PostgresLogKey, c.PostgresLogOrigin)
				if err != nil {
					return backends.Backend{}, fmt.Errorf("backend postgres: %w", err)
				}
				return backends.Backend{Name: "postgres", Store: ps}, nil
			},
		},
		{
			Name:   BackendLogServer,
			Stores: true,
			Settings: map[string]func(*Config, string) string{
				KeyLogServerURL: func(c *Config, v string) string {
					c.LogServerURL = v
					u, err := url.Parse(v)
					switch {
					case err == nil && u.User != nil:
						// Never echo a password: the message reaches Events and logs.
						return fmt.Sprintf("%q carries user information; the log server URL takes none (http(s)://host[:port]/)", u.Redacted())
					case strings.Contains(v, "@"):
						return "the value is not a log server URL (http(s)://host[:port]/) and is not repeated here: it may hold credentials"
					case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
						return fmt.Sprintf("%q is not a log server URL (http(s)://host[:port]/)", v)
					}
					return ""
				},
				KeyLogServerKey:           absolutePath(func(c *Config, v string) { c.LogServerKey = v }),
				KeyLogServerWitnessPolicy: absolutePath(func(c *Config, v string) { c.LogServerWitnessPolicy = v }),
			},
			Open: func(_ context.Context, c *Config, stores *backends.Stores) (backends.Backend, error) {
				rs, err := stores.Served(c.LogServerURL, c.LogServerKey, c.LogServerWitnessPolicy)
				if err != nil {
					return backends.Backend{}, fmt.Errorf("backend logserver %s: %w", c.LogServerURL, err)
				}
				return backends.Backend{Name: "logserver:" + c.LogServerURL, Store: rs}, nil
			},
		},
		{
			Name:           BackendOCI,
			AttachesImages: true,
			Settings: map[string]func(*Config, string) string{
				KeyOCIInsecure: func(c *Config, v string) string {
					b, err := strconv.ParseBool(v)
					c.OCIInsecure = b
					if err != nil {
						return fmt.Sprintf("%q is not a boolean", v)
					}
					return ""
				},
			},
			Open: func(_ context.Context, c *Config, _ *backends.Stores) (backends.Backend, error) {
				return backends.Backend{Name: "oci", Images: &backends.OCI{Insecure: c.OCIInsecure}}, nil
			},
		},
		{
			Name:           BackendRekor,
			AttachesImages: true,
			Settings: map[string]func(*Config, string) string{
				KeyRekorURL:         httpURL(func(c *Config, v string) { c.RekorURL = v }),
				KeyRekorTilesURL:    httpURL(func(c *Config, v string) { c.RekorTilesURL = v }),
				KeyRekorTrustedRoot: absolutePath(func(c *Config, v string) { c.RekorTrustedRoot = v }),
			},
			// Opening reads and contacts nothing: the trusted root is read
			// on first use, in the reconcile that attaches.
			Open: func(_ context.Context, c *Config, _ *backends.Stores) (backends.Backend, error) {
				return backends.Backend{Name: "rekor:" + c.RekorURL, Images: &backends.Rekor{
					URL: c.RekorURL, TilesURL: c.RekorTilesURL, TrustedRoot: c.RekorTrustedRoot, Insecure: c.OCIInsecure,
				}}, nil
			},
		},
	}
}

// LookupBackend returns the row of BackendKinds named name.
func LookupBackend(name string) (BackendKind, bool) {
	for _, k := range BackendKinds() {
		if k.Name == name {
			return k, true
		}
	}
	return BackendKind{}, false
}

// backendSetting returns how the backend key k is parsed, if it is one.
func backendSetting(k string) (func(*Config, string) string, bool) {
	for _, b := range BackendKinds() {
		if set, ok := b.Settings[k]; ok {
			return set, true
		}
	}
	return nil, false
}

// httpURL parses a key whose value must be an http(s)://host[:port][/path]
// URL without credentials, query or fragment.
func httpURL(set func(c *Config, v string)) func(*Config, string) string {
	return func(c *Config, v string) string {
		set(c, v)
		u, err := url.Parse(v)
		if err == nil && u.User != nil {
			// Never echo credentials into logs and Events.
			return "a URL with credentials is refused (value not shown)"
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Sprintf("%q is not an http(s)://host[:port] URL", v)
		}
		return ""
	}
}

// absolutePath parses a key whose value must be an absolute path.
func absolutePath(set func(c *Config, v string)) func(*Config, string) string {
	return func(c *Config, v string) string {
		set(c, v)
		if !strings.HasPrefix(v, "/") {
			return fmt.Sprintf("%q is not an absolute path", v)
		}
		return ""
	}
}
