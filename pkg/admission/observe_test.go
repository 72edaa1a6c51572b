package admission

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// recordedEvent is what a fake recorder was asked to record.
type recordedEvent struct {
	regarding *corev1.ObjectReference
	reason    string
	note      string
}

// eventLog is an events.EventRecorder that keeps what it is given (the
// real one, on the real apiserver, is in controllers/config/admission).
type eventLog struct{ got []recordedEvent }

func (l *eventLog) Eventf(regarding, _ runtime.Object, _, reason, _, note string, args ...any) {
	l.got = append(l.got, recordedEvent{regarding: regarding.(*corev1.ObjectReference), reason: reason, note: fmt.Sprintf(note, args...)})
}

var _ events.EventRecorder = (*eventLog)(nil)

// TestObserver: a validating review records a decision metric, the audit
// annotations name the decision, rule and reason, an Event goes to the
// Pod's controller (else its Namespace) and never for a dry run; the
// verdict cache counts hits and misses.
func TestObserver(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")

	reader := sdkmetric.NewManualReader()
	met, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	evs := &eventLog{}
	cache := NewCache(CacheOptions{OnLookup: met.CacheLookup})
	d := e.decider(func(c *Config) { c.Cache = cache })
	h := &Handler{d: d, obs: &Observer{Metrics: met, Events: evs}}
	ctx := context.Background()

	yes := true
	owned := pod(unsigned.String())
	owned.Name = ""
	owned.GenerateName = "web-5d8f-"
	owned.OwnerReferences = []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "u0"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "u1", Controller: &yes},
	}
	r := h.Review(ctx, review(t, admissionv1.Create, "", owned, nil, false)).Response
	if r.Allowed || r.AuditAnnotations["decision"] != DecisionDenied || r.AuditAnnotations["rule"] != "apps" || r.AuditAnnotations["reason"] != "missing" {
		t.Errorf("denied review: allowed %v, audit annotations %v", r.Allowed, r.AuditAnnotations)
	}
	r = h.Review(ctx, review(t, admissionv1.Create, "", pod(unsigned.String()), nil, false)).Response
	if r.Allowed {
		t.Fatal("unsigned admitted")
	}
	r = h.Review(ctx, review(t, admissionv1.Create, "", pod(unsigned.String()), nil, true)).Response
	if r.Allowed {
		t.Fatal("W30: unsigned admitted on a dry run")
	}
	r = h.Review(ctx, review(t, admissionv1.Create, "", pod(signed.String()), nil, false)).Response
	if !r.Allowed || r.AuditAnnotations["decision"] != DecisionAllowed || len(r.AuditAnnotations) != 1 {
		t.Errorf("allowed review: %v %v", r.Allowed, r.AuditAnnotations)
	}
	_ = h.Review(ctx, review(t, admissionv1.Create, "", pod(signed.String()), nil, false))

	if len(evs.got) != 2 {
		t.Fatalf("%d Events, want 2 (none for the dry run, none when allowed): %+v", len(evs.got), evs.got)
	}
	if g := evs.got[0]; g.regarding.Kind != "ReplicaSet" || g.regarding.Name != "web-5d8f" || g.regarding.Namespace != "team" || g.reason != ReasonDenied ||
		!strings.Contains(g.note, "pod web-5d8f-* (CREATE): container c0: image "+unsigned.String()) {
		t.Errorf("Event on the owner: %+v %+v", g, g.regarding)
	}
	if g := evs.got[1]; g.regarding.Kind != "Namespace" || g.regarding.Name != "team" || g.reason != ReasonDenied {
		t.Errorf("Event on the Namespace: %+v %+v", g, g.regarding)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	sum := func(name string, kv ...string) int64 {
		s, ok := got[name].(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("%s: %T", name, got[name])
		}
		var n int64
	points:
		for _, dp := range s.DataPoints {
			for i := 0; i < len(kv); i += 2 {
				if v, _ := dp.Attributes.Value(attribute.Key(kv[i])); v.AsString() != kv[i+1] {
					continue points
				}
			}
			n += dp.Value
		}
		return n
	}
	if n := sum(NameDecisions, "decision", DecisionDenied, "rule", "apps", "reason", "missing"); n != 3 {
		t.Errorf("denied decisions %d, want 3", n)
	}
	if n := sum(NameDecisions, "decision", DecisionAllowed); n != 2 {
		t.Errorf("allowed decisions %d, want 2", n)
	}
	// unsigned: a miss, then its negative verdict twice; signed: a miss, a hit.
	if h, m := sum(NameCacheHits), sum(NameCacheMisses); h != 3 || m != 2 {
		t.Errorf("cache hits %d misses %d, want 3 and 2", h, m)
	}
	hist, ok := got[NameLatency].(metricdata.Histogram[float64])
	if !ok || len(hist.DataPoints) != 1 || hist.DataPoints[0].Count != 5 {
		t.Errorf("latency: %+v", got[NameLatency])
	}
}

// TestOutcomeWarned: a warn-mode refusal alone is "warned", an enforce
// refusal anywhere makes it "denied".
func TestOutcomeWarned(t *testing.T) {
	warn := ImageResult{Rule: "w", Mode: ModeWarn, Reason: "signature", Err: ErrNoRule}
	deny := ImageResult{Rule: "e", Reason: "policy", Err: ErrNoRule}
	if o := outcomeOf(Decision{Allowed: true, Images: []ImageResult{{}, warn}}); o != (outcome{DecisionWarned, "w", "signature"}) {
		t.Errorf("%+v", o)
	}
	if o := outcomeOf(Decision{Images: []ImageResult{warn, deny}}); o != (outcome{DecisionDenied, "e", "policy"}) {
		t.Errorf("%+v", o)
	}
}

// TestObserverEventLimit: Events over the limit are dropped and counted.
func TestObserverEventLimit(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	met, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	evs := &eventLog{}
	o := &Observer{Metrics: met, Events: evs, EventLimit: rate.NewLimiter(0, 2)}
	ctx := context.Background()
	no := false
	req := &admissionv1.AdmissionRequest{Namespace: "team", Operation: admissionv1.Create, DryRun: &no}
	dec := Decision{Images: []ImageResult{{Image: "x", Rule: "r", Err: ErrNoRule, Message: "refused"}}}
	for i := range 5 {
		p := pod("x")
		p.Name = fmt.Sprintf("p%d", i)
		o.decided(ctx, req, p, dec, outcomeOf(dec))
	}
	if len(evs.got) != 2 {
		t.Errorf("%d Events recorded, want 2 (the burst)", len(evs.got))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == NameEventsDropped {
				if s := m.Data.(metricdata.Sum[int64]); len(s.DataPoints) != 1 || s.DataPoints[0].Value != 3 {
					t.Errorf("dropped: %+v", s.DataPoints)
				}
				return
			}
		}
	}
	t.Error("no dropped-Events metric")
}

// FuzzObservedReview: with metrics and Events on, any review body (odd
// owner references, huge names, dry-run flags) is answered, a denial
// carries its audit annotations, and an Event's note stays under the
// events.k8s.io limit.
func FuzzObservedReview(f *testing.F) {
	yes := true
	p := pod("127.0.0.1:1/apps/x@sha256:" + strings.Repeat("b", 64))
	p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: strings.Repeat("n", 300), Controller: &yes}}
	f.Add(review(f, admissionv1.Create, "", p, nil, false))
	f.Add(review(f, admissionv1.Create, "", p, nil, true))
	f.Add([]byte(`{"request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"metadata":{"ownerReferences":[{}]},"spec":{"containers":[{"image":"a@sha256:` + strings.Repeat("c", 64) + `"}]}}}}`))
	pol, err := ParsePolicy([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- {name: pinned, images: [\"**\"], require: digest, digests: [\"sha256:" + strings.Repeat("a", 64) + "\"]}\n"))
	if err != nil {
		f.Fatal(err)
	}
	d, err := NewDecider(Config{Policy: pol})
	if err != nil {
		f.Fatal(err)
	}
	met, err := NewMetrics(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs := &eventLog{}
		h := &Handler{d: d, obs: &Observer{Metrics: met, Events: evs, EventLimit: rate.NewLimiter(rate.Inf, 1)}}
		out := h.Review(context.Background(), body)
		if out.Response == nil {
			t.Fatal("no response")
		}
		for _, e := range evs.got {
			if len(e.note) > maxNote || !utf8.ValidString(e.note) || e.regarding == nil {
				t.Fatalf("Event note %d bytes, regarding %v", len(e.note), e.regarding)
			}
		}
	})
}
