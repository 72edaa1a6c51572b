package trustwatch

import (
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
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
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func key(t *testing.T) signing.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWatcherEventsAndMetrics: the controller's watcher on a real
// apiserver, against a TUF repository served over loopback: the first
// refresh and a release are TrustUpdated; a revoked developer key is
// TrustKeyRevoked naming the key, the reason and the paths; a timestamp
// close to its expiry is TrustExpiringSoon once; a repository that goes
// down is TrustRefreshFailed saying the last verified state stays in
// force; the metrics give each role's seconds to expiry and the failures.
func TestWatcherEventsAndMetrics(t *testing.T) {
	ctx := context.Background()
	cluster := kubetest.Start(t)
	kube := kubernetes.NewForConfigOrDie(cluster.Config())
	ns := "trustwatch-test"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: FloorConfigMap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer b.Shutdown()
	recorder := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "stepseal-controller"})

	// The repository: payments delegated to Alice and Bob.
	root, targets, online, alice, bob := key(t), key(t), key(t), key(t), key(t)
	dir := t.TempDir()
	r, err := repo.Init(ctx, dir, repo.InitOptions{RootSigners: []signing.Signer{root}, TargetsSigners: []signing.Signer{targets}, Online: online,
		Expiry: repo.Expiry{Timestamp: 6 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	accept := func(ps ...[]byte) {
		t.Helper()
		r, err = repo.Open(dir, repo.OpenOptions{Online: online})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Accept(ctx, ps...); err != nil {
			t.Fatal(err)
		}
	}
	p, err := r.Delegate(ctx, repo.Delegation{Name: "payments", Paths: []string{"oci/registry.example.com/payments/*"}, Keys: []crypto.PublicKey{alice.Public(), bob.Public()}}, targets)
	if err != nil {
		t.Fatal(err)
	}
	accept(p)
	site := t.TempDir()
	publish := func() {
		t.Helper()
		if _, err := r.Publish(ctx, site); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	var down atomic.Bool
	h := repo.Handler(site)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, req)
	}))
	defer srv.Close()

	cfg := settings.Defaults()
	cfg.Trust.URL, cfg.Trust.Root, cfg.Trust.CacheDir = srv.URL+"/metadata", string(r.RootBytes()), t.TempDir()
	// The history of trust goes to a real embedded transparency log.
	skey, _, err := tlog.GenerateKey("stepseal.dev/trustwatch-test")
	if err != nil {
		t.Fatal(err)
	}
	lkey, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	logStore, err := tlogstore.Open(ctx, t.TempDir(), lkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer logStore.Close(ctx)
	archive := func(ctx context.Context, name string, data []byte) error {
		_, err := logStore.Put(ctx, store.Entry{Kind: store.KindTrust, Name: name, Data: data, Subjects: []string{store.Digest(data)}})
		return err
	}
	reader := sdkmetric.NewManualReader()
	w, err := New(Options{Config: func() *settings.Config { return cfg }, Recorder: recorder, Object: cm, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Kube: kube, Namespace: ns, Archive: archive})
	if err != nil {
		t.Fatal(err)
	}
	if w.Root() != nil {
		t.Fatal("a root before any refresh")
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Root() == nil {
		t.Fatal("no root after a refresh")
	}
	waitEvent(t, kube, ns, ReasonUpdated, "targets v0 → v2")
	// The 6 h timestamp is within the default 12 h warning: once.
	waitEvent(t, kube, ns, ReasonExpiringSoon, "TUF role timestamp v")

	// Bob's laptop is lost: his key is revoked.
	bobID, _ := repo.KeyID(bob.Public())
	p, err = r.RevokeKey(ctx, "payments", bobID, "laptop lost", targets)
	if err != nil {
		t.Fatal(err)
	}
	accept(p)
	publish()
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, kube, ns, ReasonKeyRevoked, "TUF key "+bobID+" revoked from role payments by targets in targets v3: laptop lost")
	// The floor for consumers without a disk follows the refresh.
	fcm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, FloorConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	floor, err := trust.ParseFloor([]byte(fcm.Data[FloorKey]))
	if err != nil {
		t.Fatal(err)
	}
	if floor.Versions["targets"] != 3 || floor.Versions["root"] != 1 || len(floor.Root) == 0 {
		t.Fatalf("floor in %s: %+v", FloorConfigMap, floor.Versions)
	}
	waitEvent(t, kube, ns, ReasonUpdated, "targets v2 → v3")

	// Every accepted version is in the log: the bootstrap root, then each
	// timestamp, snapshot and targets version the two refreshes took.
	got := map[string]bool{}
	entries, err := logStore.List(ctx, store.Filter{Kind: store.KindTrust})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got[e.Name] = true
	}
	for _, want := range []string{"1.root.json", "2.targets.json", "3.targets.json", "3.snapshot.json", "3.timestamp.json"} {
		if !got[want] {
			t.Errorf("%s not in the transparency log; it holds %v", want, got)
		}
	}

	// The repository goes down: the failure is an Event, the state holds.
	down.Store(true)
	if err := w.Refresh(ctx); err == nil {
		t.Fatal("refresh from a repository that is down succeeded")
	}
	waitEvent(t, kube, ns, ReasonFailed, "the last verified state stays in force until it expires (timestamp v")
	if w.Root() == nil {
		t.Fatal("the last verified state was dropped on a failed refresh")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var expiry map[string]float64
	var failures int64
	events := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[float64]:
				expiry = map[string]float64{}
				for _, dp := range d.DataPoints {
					v, _ := dp.Attributes.Value(attribute.Key("role"))
					expiry[v.AsString()] = dp.Value
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					switch m.Name {
					case NameFailures:
						failures += dp.Value
					case NameEvents:
						r, _ := dp.Attributes.Value("reason")
						events[r.AsString()] += dp.Value
					}
				}
			}
		}
	}
	if failures != 1 || expiry["timestamp"] <= 0 || expiry["timestamp"] > 6*3600 || expiry["root"] < 300*24*3600 {
		t.Fatalf("metrics: failures %d, expiry %v", failures, expiry)
	}
	// One series per kind of change.
	if events[ReasonUpdated] != 2 || events[ReasonKeyRevoked] < 1 || events[ReasonExpiringSoon] < 1 || events[ReasonFailed] != 1 {
		t.Fatalf("%s: %v", NameEvents, events)
	}
}

// waitEvent waits for an Event of reason whose message contains want on
// the stepseal-config ConfigMap of ns.
func waitEvent(t *testing.T, kube kubernetes.Interface, ns, reason, want string) {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		evs, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			if e.InvolvedObject.Name != settings.ConfigMapName {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason == reason && strings.Contains(e.Message, want) {
				return
			}
		}
	}
	t.Fatalf("no %s Event containing %q; Events:\n%s", reason, want, strings.Join(seen, "\n"))
}
