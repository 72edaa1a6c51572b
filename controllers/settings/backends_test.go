package settings

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The table of backends is what Parse accepts: every row's name is a known
// backend (next to a storing one when it stores nothing itself), every row
// can do something, no two rows claim a name or a settings key, and the
// errors list the rows in table order.
func TestBackendKinds(t *testing.T) {
	kinds := BackendKinds()
	var names, storing []string
	keys := map[string]string{}
	for _, k := range kinds {
		if k.Name == "" || slices.Contains(names, k.Name) {
			t.Fatalf("backend name %q empty or listed twice", k.Name)
		}
		names = append(names, k.Name)
		if k.Stores {
			storing = append(storing, k.Name)
		}
		if !k.Stores && !k.AttachesImages {
			t.Errorf("backend %s neither stores nor attaches", k.Name)
		}
		if k.Open == nil {
			t.Errorf("backend %s cannot be opened", k.Name)
		}
		for key := range k.Settings {
			if other, ok := keys[key]; ok {
				t.Errorf("key %s claimed by backends %s and %s", key, other, k.Name)
			}
			keys[key] = k.Name
		}
		list := k.Name
		if !k.Stores {
			list = BackendDir + "," + k.Name
		}
		data := map[string]string{KeyBackends: list}
		if k.Name == BackendLogServer {
			data[KeyLogServerURL] = "http://127.0.0.1:8080/"
		}
		if k.Name == BackendRekor {
			data[KeyRekorURL] = "http://127.0.0.1:3000"
		}
		c, err := Parse(data)
		if err != nil {
			t.Errorf("backend %s refused: %v", k.Name, err)
		} else if !slices.Contains(c.Backends, k.Name) {
			t.Errorf("backends %v, want %s among them", c.Backends, k.Name)
		}
		if got, ok := LookupBackend(k.Name); !ok || got.Name != k.Name {
			t.Errorf("LookupBackend(%q) = %q, %v", k.Name, got.Name, ok)
		}
	}
	if want := []string{BackendDir, BackendTLog, BackendPostgres, BackendLogServer, BackendOCI, BackendRekor}; !slices.Equal(names, want) {
		t.Errorf("backends %v, want %v", names, want)
	}
	if _, ok := LookupBackend("s3"); ok {
		t.Error(`LookupBackend("s3") found a backend`)
	}
	_, err := Parse(map[string]string{KeyBackends: "s3"})
	if want := `backends: unknown backend "s3" (known: ` + strings.Join(names, ", ") + ")"; !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want ErrInvalid with %q", err, want)
	}
	_, err = Parse(map[string]string{KeyBackends: BackendOCI})
	if want := `needs a store backend (` + strings.Join(storing, " or ") + ") next to it"; !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want ErrInvalid with %q", err, want)
	}
	if _, err := Parse(map[string]string{KeyBackends: BackendLogServer}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), KeyLogServerURL) {
		t.Errorf("logserver without a URL: %v", err)
	}
	if _, err := Parse(map[string]string{KeyBackends: BackendLogServer, KeyLogServerURL: "ftp://log"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("logserver with an ftp URL: %v", err)
	}
	// A URL with credentials is refused without repeating the password,
	// whether or not it parses as a URL.
	for _, v := range []string{"https://stepseal:s3cret-pw@log.example/", "http://stepseal:s3cret-pw@log example/", "s3cret-pw@log"} {
		_, err := Parse(map[string]string{KeyBackends: BackendLogServer, KeyLogServerURL: v})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), KeyLogServerURL) || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("logserver URL %q: err = %v, want ErrInvalid naming the key and not the password", v, err)
		}
	}
	// Every backend key is a key of the ConfigMap (not "unknown key").
	for key, backend := range keys {
		if _, err := Parse(map[string]string{key: "\x00 not valid"}); err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("%s's key %s: %v", backend, key, err)
		}
	}
}

// Parse of any ConfigMap either refuses it with ErrInvalid or returns a
// Config whose every backend is in the table and one of them stores.
func FuzzParse(f *testing.F) {
	f.Add(KeyBackends, "dir,tlog,oci", KeyTLogOrigin, "example.com/log")
	f.Add(KeyBackends, "oci", KeyStoreDir, "relative")
	f.Add(KeyBackends, " , ", KeySignerKMS+".team", "awskms:///alias/a")
	f.Add(KeyOCIInsecure, "true", KeyRetryBaseDelay, "1h")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		c, err := Parse(map[string]string{k1: v1, k2: v2})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		storing := false
		for _, b := range c.Backends {
			kind, ok := LookupBackend(b)
			if !ok {
				t.Fatalf("accepted unknown backend %q", b)
			}
			storing = storing || kind.Stores
		}
		if !storing {
			t.Fatalf("accepted backends %v: none stores", c.Backends)
		}
	})
}

// The postgres backend's connection string stays out of the ConfigMap: a
// DSN where the file's path goes is refused without being echoed, and a
// "storage.postgres.dsn" key is unknown (named, its value not shown).
func TestPostgresDSNNotInConfigMap(t *testing.T) {
	const secret = "s3cret-Pa55word"
	for _, data := range []map[string]string{
		{KeyBackends: BackendPostgres, KeyPostgresDSNFile: "postgres://stepseal:" + secret + "@db:5432/stepseal"},
		{KeyBackends: BackendPostgres, KeyPostgresDSNFile: "host=db password=" + secret},
		{KeyBackends: BackendPostgres, "storage.postgres.dsn": "host=db password=" + secret},
	} {
		_, err := Parse(data)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Parse(%v): %v, want ErrInvalid", data, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	c, err := Parse(map[string]string{KeyBackends: "dir," + BackendPostgres, KeyPostgresDSNFile: "/etc/db/dsn", KeyPostgresLogDir: "/var/lib/stepseal/shared-log"})
	if err != nil || c.PostgresDSNFile != "/etc/db/dsn" || c.PostgresLogDir != "/var/lib/stepseal/shared-log" {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	// The tlog and postgres backends cannot share a log directory: one
	// process appends to a log through one handle.
	_, err = Parse(map[string]string{KeyBackends: BackendTLog + "," + BackendPostgres, KeyTLogDir: "/var/lib/x", KeyPostgresLogDir: "/var/lib/x"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "logs of their own") {
		t.Fatalf("tlog and postgres on one log directory: %v", err)
	}
}

// The postgres backend's log is a served log (storage.postgres.log.url)
// or a log directory, never both: a ConfigMap naming the URL with any key
// of a log directory is refused, naming both keys; the served log's key
// and witness policy without a URL are refused too.
func TestPostgresServedLog(t *testing.T) {
	c, err := Parse(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: "http://log.stepseal:8080/",
		KeyPostgresLogPublicKey: "/etc/log/log.pub", KeyPostgresLogWitnessPolicy: "/etc/log/witnesses"})
	if err != nil || c.PostgresLogURL != "http://log.stepseal:8080/" || c.PostgresLogPublicKey != "/etc/log/log.pub" || c.PostgresLogWitnessPolicy != "/etc/log/witnesses" {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	if c, err := Parse(map[string]string{KeyBackends: BackendTLog + "," + BackendPostgres, KeyPostgresLogURL: "http://log:8080/", KeyTLogDir: Defaults().PostgresLogDir}); err != nil || c.TLogDir != c.PostgresLogDir {
		t.Errorf("tlog next to postgres on a served log (the unused default log directory is the tlog's): %v", err)
	}
	for _, k := range []string{KeyPostgresLogDir, KeyPostgresLogKey, KeyPostgresLogOrigin} {
		v := "/var/lib/x"
		if k == KeyPostgresLogOrigin {
			v = "example.com/log"
		}
		_, err := Parse(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: "http://log:8080/", k: v})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), KeyPostgresLogURL+" and "+k) || !strings.Contains(err.Error(), "not both") {
			t.Errorf("%s with %s: %v", KeyPostgresLogURL, k, err)
		}
	}
	for _, k := range []string{KeyPostgresLogPublicKey, KeyPostgresLogWitnessPolicy} {
		_, err := Parse(map[string]string{KeyBackends: BackendPostgres, k: "/etc/log/x"})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), k+" is a setting of a served log") {
			t.Errorf("%s without a URL: %v", k, err)
		}
	}
	for _, bad := range []string{"ftp://log", "http://user:pw@log/", "log:8080", "http://log/?x=1"} {
		if _, err := Parse(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %q: %v", KeyPostgresLogURL, bad, err)
		}
	}
}
