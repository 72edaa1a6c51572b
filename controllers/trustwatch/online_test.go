package trustwatch

import (
	"context"
	"crypto"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

// onlineEnv is a namespace on the real apiserver with stepseal-config, the
// floor ConfigMap and an Event recorder, and a TUF repository whose
// timestamp expires after a few seconds, published to a directory served
// over loopback.
type onlineEnv struct {
	kube     kubernetes.Interface
	ns       string
	cm       *corev1.ConfigMap
	recorder record.EventRecorder
	online   signing.Signer
	targets  signing.Signer
	onlineCS []byte // the online key, PEM, encrypted with "pw"
	repo     *repo.Repo
	site     string
	url      string
}

func newOnlineEnv(t *testing.T, ns string, tsExpiry time.Duration) *onlineEnv {
	t.Helper()
	ctx := context.Background()
	cluster := kubetest.Start(t)
	e := &onlineEnv{kube: kubernetes.NewForConfigOrDie(cluster.Config()), ns: ns}
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.cm, err = e.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: FloorConfigMap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.kube.CoreV1().Events("")})
	t.Cleanup(b.Shutdown)
	e.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "stepseal-controller"})

	ok, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	if e.online, err = signing.NewSigner(ok); err != nil {
		t.Fatal(err)
	}
	if e.onlineCS, err = signing.MarshalPrivateKeyPEM(ok, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	e.targets = key(t)
	if e.repo, err = repo.Init(ctx, t.TempDir(), repo.InitOptions{RootSigners: []signing.Signer{key(t)}, TargetsSigners: []signing.Signer{e.targets}, Online: e.online,
		Expiry: repo.Expiry{Timestamp: tsExpiry}}); err != nil {
		t.Fatal(err)
	}
	e.site = t.TempDir()
	if _, err := e.repo.Publish(ctx, e.site); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(repo.Handler(e.site))
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/" + repo.MetadataDir
	return e
}

func (e *onlineEnv) config(t *testing.T) *settings.Config {
	cfg := settings.Defaults()
	cfg.Trust.URL, cfg.Trust.Root, cfg.Trust.CacheDir = e.url, string(e.repo.RootBytes()), t.TempDir()
	return cfg
}

func (e *onlineEnv) verifier(t *testing.T) *trust.Client {
	t.Helper()
	c, err := trust.NewClient(context.Background(), trust.ClientOptions{Source: e.url, CacheDir: t.TempDir(), BootstrapRoot: e.repo.RootBytes()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTimestampLeftToExpireIsAFreeze: no online re-signing configured and
// a 3-second timestamp: the controller warns TrustExpiringSoon before the
// expiry; after it, its refresh is TrustRefreshFailed naming the expired
// role and when, and every client — the controller's (which keeps its
// last state and says it expired), a verifier that had refreshed, a new
// one — refuses with ErrFreeze (reject.ErrExpired) naming timestamp v1
// and its expiry.
func TestTimestampLeftToExpireIsAFreeze(t *testing.T) {
	ctx := context.Background()
	e := newOnlineEnv(t, "trust-freeze", 3*time.Second)
	cfg := e.config(t)
	cfg.Trust.ExpiryWarning = time.Hour
	w, err := New(Options{Config: func() *settings.Config { return cfg }, Recorder: e.recorder, Object: e.cm, Kube: e.kube, Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	seen := e.verifier(t)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := seen.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.kube, e.ns, ReasonExpiringSoon, "TUF role timestamp v1 expires")
	exp, err := seen.Verified()
	if err != nil {
		t.Fatal(err)
	}
	expires := exp.Timestamp.Signed.Expires.UTC().Format(time.RFC3339)
	time.Sleep(time.Until(exp.Timestamp.Signed.Expires) + 200*time.Millisecond)

	if err := w.Refresh(ctx); !errors.Is(err, trust.ErrFreeze) {
		t.Fatalf("controller refresh after the expiry: %v", err)
	}
	waitEvent(t, e.kube, e.ns, ReasonFailed, `expired metadata: role "timestamp" v1: expired at `+expires)
	for name, c := range map[string]*trust.Client{"verifier that refreshed before": seen, "new verifier": e.verifier(t), "controller": w.current()} {
		_, err := c.Refresh(ctx)
		var te *trust.Error
		if !errors.Is(err, trust.ErrFreeze) || !errors.Is(err, reject.ErrExpired) || !errors.As(err, &te) || te.Role != "timestamp" || te.Version != 1 || !strings.Contains(err.Error(), "expired at "+expires) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A lookup through the last verified state is refused too.
	if _, err := w.current().Resolve(ctx, "layouts/x.layout"); !errors.Is(err, trust.ErrFreeze) {
		t.Errorf("resolve through the expired state: %v", err)
	}
}

// TestOnlineRolesKeptAlive: with trust.online.* set, the controller
// re-signs the timestamp (from the state it verified, with the online key
// of a Secret) before it expires: over three times the timestamp's
// lifetime no refresh fails, an independent verifier sees newer and newer
// timestamps and never an expired one, TrustResigned names each step, the
// resign counter counts them. Before the Secret exists, the attempt is
// TrustResignFailed naming it.
func TestOnlineRolesKeptAlive(t *testing.T) {
	ctx := context.Background()
	e := newOnlineEnv(t, "trust-online", 3*time.Second)
	cfg := e.config(t)
	cfg.Trust.ExpiryWarning = time.Second
	cfg.Trust.Online = settings.Online{Publish: e.site, KeySecret: "tuf-online", ResignBefore: 5 * time.Second, TimestampExpiry: 6 * time.Second, SnapshotExpiry: time.Hour}
	reader := sdkmetric.NewManualReader()
	w, err := New(Options{Config: func() *settings.Config { return cfg }, Recorder: e.recorder, Object: e.cm, Kube: e.kube, Namespace: e.ns,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	v := e.verifier(t)
	if _, err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := v.Verified()
	time.Sleep(200 * time.Millisecond)
	// Within resign-before, but the Secret is not there yet.
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.kube, e.ns, ReasonResignFailed, "online key Secret trust-online/tuf-online")
	if _, err := e.kube.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tuf-online"},
		Data: map[string][]byte{SecretKeyCosignKey: e.onlineCS, SecretKeyCosignPassword: []byte("pw")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	end := first.Timestamp.Signed.Expires.Add(8 * time.Second)
	var last int64
	for time.Now().Before(end) {
		if err := w.Refresh(ctx); err != nil {
			t.Fatalf("controller refresh with re-signing on: %v", err)
		}
		if _, err := v.Refresh(ctx); err != nil {
			t.Fatalf("verifier refresh with re-signing on: %v", err)
		}
		cur, _ := v.Verified()
		if !cur.Timestamp.Signed.Expires.After(time.Now()) {
			t.Fatalf("the verifier trusts an expired timestamp v%d", cur.Timestamp.Signed.Version)
		}
		last = cur.Timestamp.Signed.Version
		time.Sleep(300 * time.Millisecond)
	}
	if last < 3 {
		t.Fatalf("after %s the verifier is at timestamp v%d", time.Since(first.Timestamp.Signed.Expires.Add(-3*time.Second)).Round(time.Second), last)
	}
	waitEvent(t, e.kube, e.ns, ReasonResigned, "re-signed TUF timestamp v1 → v2 (expires ")
	waitEvent(t, e.kube, e.ns, ReasonUpdated, "timestamp v1 → v2")
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == NameResigns {
				for _, dp := range d.DataPoints {
					r, _ := dp.Attributes.Value("result")
					counts[r.AsString()] += dp.Value
				}
			}
		}
	}
	if counts["failed"] != 1 || counts["resigned"] < 2 {
		t.Fatalf("%s: %v", NameResigns, counts)
	}
	evs, _ := e.kube.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{})
	for _, ev := range evs.Items {
		if ev.Reason == ReasonFailed || ev.Reason == ReasonExpiringSoon {
			t.Errorf("with re-signing on: %s: %s", ev.Reason, ev.Message)
		}
	}
}

// TestUpdatedEventNamesTargetsAndFastForward: on the real apiserver, a
// release is TrustUpdated naming each target path that changed in the
// developer role the controller had looked up (its new digest), and a
// timestamp pushed 200 000 versions ahead with the online key is
// TrustSuspectedFastForward — when it is accepted, and again when the
// repository's real, lower timestamp is then refused as a rollback.
func TestUpdatedEventNamesTargetsAndFastForward(t *testing.T) {
	ctx := context.Background()
	e := newOnlineEnv(t, "trust-targets", time.Hour)
	dev := key(t)
	r := e.repo
	accept := func(p []byte) {
		t.Helper()
		var err error
		if r, err = repo.Open(r.Dir(), repo.OpenOptions{Online: e.online}); err != nil {
			t.Fatal(err)
		}
		if p == nil {
			_, err = r.Tick(ctx)
		} else {
			_, err = r.Accept(ctx, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Publish(ctx, e.site); err != nil {
			t.Fatal(err)
		}
	}
	targets := e.targets
	p, err := r.Delegate(ctx, repo.Delegation{Name: "payments", Paths: []string{"oci/registry.example.com/payments/*"}, Keys: []crypto.PublicKey{dev.Public()}}, targets)
	if err != nil {
		t.Fatal(err)
	}
	accept(p)
	const api, web = "oci/registry.example.com/payments/api:v1", "oci/registry.example.com/payments/web:v1"
	release := func(path string, c byte) {
		t.Helper()
		p, err := r.Release(ctx, "payments", path, repo.Target{SHA256: strings.Repeat(string(c), 64), Length: 10}, dev)
		if err != nil {
			t.Fatal(err)
		}
		accept(p)
	}
	release(api, 'a')
	cfg := e.config(t)
	w, err := New(Options{Config: func() *settings.Config { return cfg }, Recorder: e.recorder, Object: e.cm, Kube: e.kube, Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.current().Resolve(ctx, api); err != nil {
		t.Fatal(err)
	}
	release(api, 'b')
	release(web, 'c')
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.kube, e.ns, ReasonUpdated, "targets: payments changed "+api+" (sha256 bbbbbbbbbbbb), payments added "+web+" (sha256 cccccccccccc)")

	// The online key pushes the timestamp 200 000 versions ahead.
	tsPath := filepath.Join(e.site, repo.MetadataDir, "timestamp.json")
	md, err := (&metadata.Metadata[metadata.TimestampType]{}).FromFile(tsPath)
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Version += 200_000
	md.ClearSignatures()
	ts, err := repo.TUFSigner(ctx, e.online)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Sign(ts); err != nil {
		t.Fatal(err)
	}
	if err := md.ToFile(tsPath, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.kube, e.ns, ReasonFastForward, "in one refresh: if the repository did not sign these")
	// The publisher's real next timestamp, far lower (written over the
	// published one by hand: Publish refuses a lower timestamp).
	if r, err = repo.Open(r.Dir(), repo.OpenOptions{Online: e.online}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(filepath.Join(r.Dir(), repo.MetadataDir))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(r.Dir(), repo.MetadataDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.site, repo.MetadataDir, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Refresh(ctx); !errors.Is(err, trust.ErrRollback) {
		t.Fatalf("refresh after the fast-forward: %v", err)
	}
	waitEvent(t, e.kube, e.ns, ReasonFastForward, "must be rotated in root")
}
