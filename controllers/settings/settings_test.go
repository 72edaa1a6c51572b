package settings

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    map[string]string
		want    func(*Config)
		wantErr string
	}{
		{name: "empty is defaults", data: nil, want: func(*Config) {}},
		{name: "all keys", data: map[string]string{
			KeyBackends: " dir ", KeyStoreDir: "/data", KeySignerSecret: "keys", KeyMaxRetries: "3",
			KeyRetryBaseDelay: "100ms", KeyRetryMaxDelay: "2s", KeyBuilderID: "https://b", "_example": "ignored",
		}, want: func(c *Config) {
			c.StoreDir, c.SignerSecret, c.MaxRetries, c.BuilderID = "/data", "keys", 3, "https://b"
			c.RetryBaseDelay, c.RetryMaxDelay = 100*time.Millisecond, 2*time.Second
		}},
		{name: "oci next to dir", data: map[string]string{KeyBackends: "dir, oci", KeyOCIInsecure: "true"}, want: func(c *Config) {
			c.Backends, c.OCIInsecure = []string{BackendDir, BackendOCI}, true
		}},
		{name: "kms", data: map[string]string{KeySignerKMS: "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", KeySignerKMS + ".team-b": "hashivault://team-b"}, want: func(c *Config) {
			c.SignerKMS = "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
			c.NamespaceKMS = map[string]string{"team-b": "hashivault://team-b"}
		}},
		{name: "tlog", data: map[string]string{KeyBackends: "dir,tlog", KeyTLogDir: "/log", KeyTLogKey: "/keys/log.key", KeyTLogOrigin: "example.com/log"}, want: func(c *Config) {
			c.Backends, c.TLogDir, c.TLogKey, c.TLogOrigin = []string{BackendDir, BackendTLog}, "/log", "/keys/log.key", "example.com/log"
		}},
		{name: "oci next to tlog", data: map[string]string{KeyBackends: "tlog,oci"}, want: func(c *Config) {
			c.Backends = []string{BackendTLog, BackendOCI}
		}},
		{name: "record images", data: map[string]string{KeyRecordImages: "reg/stepseal@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}, want: func(c *Config) {
			c.RecordImages = []string{"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}
		}},
		{name: "record image by tag", data: map[string]string{KeyRecordImages: "reg/stepseal:v1"}, wantErr: "names no image by sha256 digest"},
		{name: "record image placeholder", data: map[string]string{KeyRecordImages: "ko://github.com/stepseal/stepseal/images/stepseal"}, wantErr: "names no image by sha256 digest"},
		{name: "tlog relative", data: map[string]string{KeyTLogDir: "log"}, wantErr: "not an absolute path"},
		{name: "tlog bad origin", data: map[string]string{KeyTLogOrigin: "my log"}, wantErr: "not a log name"},
		{name: "kms not a URI", data: map[string]string{KeySignerKMS: "/etc/cosign.key"}, wantErr: "not a KMS key URI"},
		{name: "kms bad namespace", data: map[string]string{KeySignerKMS + ".Team_B": "awskms:///alias/b"}, wantErr: `"Team_B" is not a namespace name`},
		{name: "oci alone", data: map[string]string{KeyBackends: "oci"}, wantErr: "needs a store backend"},
		{name: "bad insecure", data: map[string]string{KeyOCIInsecure: "maybe"}, wantErr: "not a boolean"},
		{name: "unknown backend", data: map[string]string{KeyBackends: "dir,s3"}, wantErr: `unknown backend "s3"`},
		{name: "no backend", data: map[string]string{KeyBackends: " , "}, wantErr: "nothing could be stored"},
		{name: "relative dir", data: map[string]string{KeyStoreDir: "data"}, wantErr: "not an absolute path"},
		{name: "bad retries", data: map[string]string{KeyMaxRetries: "0"}, wantErr: "not a positive integer"},
		{name: "bad delay", data: map[string]string{KeyRetryBaseDelay: "soon"}, wantErr: "not a positive duration"},
		{name: "base over max", data: map[string]string{KeyRetryBaseDelay: "1h"}, wantErr: "larger than"},
		{name: "typo", data: map[string]string{"max-retry": "3"}, wantErr: `unknown key "max-retry"`},
		{name: "vsa", data: map[string]string{KeyVSAEnabled: "true", KeyVSAVerifierID: "https://stepseal.dev/controller/prod", KeyVSASecret: "vsa-key"}, want: func(c *Config) {
			c.VSA = VSA{Enabled: true, VerifierID: "https://stepseal.dev/controller/prod", Secret: "vsa-key"}
		}},
		{name: "vsa kms", data: map[string]string{KeyVSAKMS: "awskms:///alias/vsa"}, want: func(c *Config) { c.VSA.KMS = "awskms:///alias/vsa" }},
		{name: "vsa without verifier id", data: map[string]string{KeyVSAEnabled: "true"}, wantErr: "vsa.verifier-id is not set"},
		{name: "vsa verifier id not a URI", data: map[string]string{KeyVSAVerifierID: "controller"}, wantErr: "not an absolute URI"},
		{name: "vsa kms not a URI", data: map[string]string{KeyVSAKMS: "/key"}, wantErr: "not a KMS key URI"},
		{name: "vsa enabled not a boolean", data: map[string]string{KeyVSAEnabled: "yes please"}, wantErr: "not a boolean"},
		{name: "trust online", data: map[string]string{KeyTrustURL: "oci://registry.example.com/tuf", KeyTrustOnlinePublish: "oci://registry.example.com/tuf",
			KeyTrustOnlineKeySecret: "tuf-online", KeyTrustOnlineResignBefore: "6h", KeyTrustOnlineTimestampExpiry: "12h", KeyTrustOnlineSnapshotExpiry: "48h"}, want: func(c *Config) {
			c.Trust.URL = "oci://registry.example.com/tuf"
			c.Trust.Online = Online{Publish: "oci://registry.example.com/tuf", KeySecret: "tuf-online", ResignBefore: 6 * time.Hour, TimestampExpiry: 12 * time.Hour, SnapshotExpiry: 48 * time.Hour}
		}},
		{name: "trust online dir and kms", data: map[string]string{KeyTrustURL: "https://tuf.example.com/metadata", KeyTrustOnlinePublish: "/srv/tuf", KeyTrustOnlineKMS: "awskms:///alias/tuf"}, want: func(c *Config) {
			c.Trust.URL = "https://tuf.example.com/metadata"
			c.Trust.Online.Publish, c.Trust.Online.KMS = "/srv/tuf", "awskms:///alias/tuf"
		}},
		{name: "trust recipients and reencrypt", data: map[string]string{KeyTrustRecipientsPolicy: "platforms", KeyTrustReencryptSecret: "tuf-reencrypt"}, want: func(c *Config) {
			c.Trust.RecipientsPolicy, c.Trust.ReencryptSecret = "platforms", "tuf-reencrypt"
		}},
		{name: "trust reencrypt without policy", data: map[string]string{KeyTrustReencryptSecret: "tuf-reencrypt"}, wantErr: "the policy decides"},
		{name: "trust online without url", data: map[string]string{KeyTrustOnlinePublish: "/srv/tuf", KeyTrustOnlineKeySecret: "k"}, wantErr: "re-signs only what it verified"},
		{name: "trust online without key", data: map[string]string{KeyTrustURL: "https://t/m", KeyTrustOnlinePublish: "/srv/tuf"}, wantErr: "needs exactly one of"},
		{name: "trust online key without publish", data: map[string]string{KeyTrustOnlineKeySecret: "k"}, wantErr: "without " + KeyTrustOnlinePublish},
		{name: "trust online relative", data: map[string]string{KeyTrustOnlinePublish: "srv/tuf"}, wantErr: "neither oci://"},
		{name: "trust online before too long", data: map[string]string{KeyTrustURL: "https://t/m", KeyTrustOnlinePublish: "/srv/tuf", KeyTrustOnlineKeySecret: "k", KeyTrustOnlineResignBefore: "24h"}, wantErr: "every refresh would re-sign"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.data)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Defaults()
			tc.want(want)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	c := &Config{RetryBaseDelay: time.Second, RetryMaxDelay: 5 * time.Second}
	var got []time.Duration
	for a := 1; a <= 5; a++ {
		got = append(got, c.Backoff(a))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestStoreKeepsLastGoodConfig(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	s := NewStore(zap.NewNop().Sugar(), rec)
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "stepseal"}, Data: data}
	}
	s.OnConfigChanged(cm(map[string]string{KeyMaxRetries: "4"}))
	if got := FromContext(s.ToContext(context.Background())).MaxRetries; got != 4 {
		t.Fatalf("max retries %d, want 4", got)
	}
	s.OnConfigChanged(cm(map[string]string{KeyMaxRetries: "four"}))
	if got := s.Load().MaxRetries; got != 4 {
		t.Errorf("after a malformed ConfigMap: max retries %d, want the last good 4", got)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "Warning InvalidConfig") || !strings.Contains(e, `"four"`) {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no Warning Event for the malformed ConfigMap")
	}
	if got := FromContext(context.Background()); got.MaxRetries != Defaults().MaxRetries {
		t.Errorf("FromContext without a Config: %+v", got)
	}
}

// A ConfigMap refused before any was accepted leaves no good
// configuration to keep: the Store does not fall back to the defaults
// (the dir backend) quietly but holds a Refused Config, says so in the
// Warning Event, and a valid ConfigMap later replaces it.
func TestStoreRefusedFirstConfig(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	s := NewStore(zap.NewNop().Sugar(), rec)
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "stepseal"}, Data: data}
	}
	s.OnConfigChanged(cm(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: "ftp://log"}))
	got := s.Load()
	if !errors.Is(got.Refused, ErrInvalid) || !strings.Contains(got.Refused.Error(), KeyPostgresLogURL) {
		t.Fatalf("after a refused first ConfigMap: Refused = %v, want ErrInvalid naming %s", got.Refused, KeyPostgresLogURL)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "Warning InvalidConfig") || !strings.Contains(e, "signing nothing") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no Warning Event for the refused ConfigMap")
	}
	s.OnConfigChanged(cm(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: "http://log:8080/"}))
	if got := s.Load(); got.Refused != nil || got.PostgresLogURL != "http://log:8080/" {
		t.Fatalf("after a valid ConfigMap: %+v", got)
	}
	s.OnConfigChanged(cm(map[string]string{KeyBackends: BackendPostgres, KeyPostgresLogURL: "ftp://log"}))
	if got := s.Load(); got.Refused != nil || got.PostgresLogURL != "http://log:8080/" {
		t.Errorf("a refused ConfigMap after a good one: %+v, want the last good one kept", got)
	}
}

// A DSN file's path may hold '=' or '@' (a directory named by a test or
// a mount): only a value that is not an absolute path, holds whitespace
// or a URL scheme is refused as a possible connection string.
func TestPostgresDSNFilePaths(t *testing.T) {
	for _, p := range []string{"/tmp/TestX/replicas=2/dsn", "/etc/stepseal/postgres@primary/dsn"} {
		c, err := Parse(map[string]string{KeyBackends: BackendPostgres, KeyPostgresDSNFile: p})
		if err != nil || c.PostgresDSNFile != p {
			t.Errorf("Parse(%s = %q): %v", KeyPostgresDSNFile, p, err)
		}
	}
	for _, p := range []string{"dsn", "/x host=db", "/x\tpassword=y", "postgres://u:p@db/x", "/postgres://u@db"} {
		if _, err := Parse(map[string]string{KeyBackends: BackendPostgres, KeyPostgresDSNFile: p}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%s = %q): %v, want ErrInvalid", KeyPostgresDSNFile, p, err)
		}
	}
}
