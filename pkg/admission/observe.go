package admission

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Instrument names (OpenTelemetry). The Prometheus exporter adds the unit
// and _total suffixes: stepseal_admission_decisions_total,
// stepseal_admission_latency_seconds, stepseal_admission_cache_hits_total,
// stepseal_admission_cache_misses_total,
// stepseal_admission_events_dropped_total.
const (
	NameDecisions   = "stepseal.admission.decisions"
	NameLatency     = "stepseal.admission.latency"
	NameCacheHits   = "stepseal.admission.cache.hits"
	NameCacheMisses = "stepseal.admission.cache.misses"
	// NameEventsDropped counts Events over Observer.EventLimit.
	NameEventsDropped = "stepseal.admission.events.dropped"
)

// Decision labels (metrics, audit annotations).
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
	DecisionWarned  = "warned"
)

// Event reasons recorded on a Pod's owner (or its Namespace).
const (
	ReasonDenied = "AdmissionDenied"
	ReasonWarned = "AdmissionWarned"
)

// maxNote bounds an Event's note (events.k8s.io refuses more than 1 kB).
const maxNote = 1000

// latencyBuckets are seconds, from a cached verdict (well under a
// millisecond) to the 8 s internal deadline.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 8, 10}

// Metrics are the webhook's OpenTelemetry instruments. A nil *Metrics
// records nothing.
type Metrics struct {
	decisions    metric.Int64Counter
	latency      metric.Float64Histogram
	hits, misses metric.Int64Counter
	dropped      metric.Int64Counter
}

// NewMetrics creates the instruments on mp (nil: a no-op provider).
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/stepseal/stepseal/pkg/admission")
	var r Metrics
	var err error
	if r.decisions, err = m.Int64Counter(NameDecisions,
		metric.WithDescription("Pod admission reviews answered by the validating webhook, by decision, the reject reason and rule of the first refused (or warned) image"),
		metric.WithUnit("{review}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameDecisions, err)
	}
	if r.latency, err = m.Float64Histogram(NameLatency,
		metric.WithDescription("Seconds to answer one admission review, by webhook (validate, mutate)"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameLatency, err)
	}
	if r.hits, err = m.Int64Counter(NameCacheHits,
		metric.WithDescription("Image verdicts served from the verdict cache"), metric.WithUnit("{lookup}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameCacheHits, err)
	}
	if r.misses, err = m.Int64Counter(NameCacheMisses,
		metric.WithDescription("Image verdicts not in the verdict cache (checked, or joined a running check)"), metric.WithUnit("{lookup}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameCacheMisses, err)
	}
	if r.dropped, err = m.Int64Counter(NameEventsDropped,
		metric.WithDescription("Admission Events not recorded because of the Event rate limit"), metric.WithUnit("{event}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameEventsDropped, err)
	}
	return &r, nil
}

// CacheLookup records a verdict-cache lookup (CacheOptions.OnLookup).
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.hits.Add(context.Background(), 1)
	} else {
		m.misses.Add(context.Background(), 1)
	}
}

// Observer records what the validating webhook decided: metrics, and an
// Event on the Pod's owner (a denied Pod never exists) or, for a Pod
// without owner, on its Namespace. A nil *Observer records nothing.
type Observer struct {
	Metrics *Metrics
	// Events records Events; in a cluster, client-go's events.k8s.io
	// recorder (incluster.Run), which folds repeats of one (object, reason,
	// note) into an EventSeries. Nil: no Events.
	Events EventRecorder
	// EventLimit bounds the Events recorded (a tenant creating Pods of
	// distinct names in a loop must not flood the apiserver); those over
	// it are dropped and counted (stepseal_admission_events_dropped_total).
	// Nil: no bound.
	EventLimit *rate.Limiter
}

// EventRecorder is the method of client-go's events.EventRecorder the
// Observer uses, declared here so that this package does not link
// client-go's typed clientset.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// outcome summarises a decision for metrics and audit annotations.
type outcome struct{ decision, rule, reason string }

func outcomeOf(dec Decision) outcome {
	o := outcome{decision: DecisionAllowed}
	for _, r := range dec.Images {
		if r.Err == nil {
			continue
		}
		if r.Mode != ModeWarn {
			return outcome{decision: DecisionDenied, rule: r.Rule, reason: r.Reason}
		}
		if o.decision == DecisionAllowed {
			o = outcome{decision: DecisionWarned, rule: r.Rule, reason: r.Reason}
		}
	}
	return o
}

// auditAnnotations go into the AdmissionResponse; the apiserver prefixes
// each key with the webhook's name (verify.stepseal.dev/decision, ...).
func (o outcome) auditAnnotations() map[string]string {
	a := map[string]string{"decision": o.decision}
	if o.rule != "" {
		a["rule"] = o.rule
	}
	if o.reason != "" {
		a["reason"] = o.reason
	}
	return a
}

func (o *Observer) reviewed(ctx context.Context, webhook string, start time.Time) {
	if o == nil || o.Metrics == nil {
		return
	}
	o.Metrics.latency.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("webhook", webhook)))
}

func (o *Observer) decided(ctx context.Context, req *admissionv1.AdmissionRequest, pod *corev1.Pod, dec Decision, out outcome) {
	if o == nil {
		return
	}
	if o.Metrics != nil {
		o.Metrics.decisions.Add(ctx, 1, metric.WithAttributes(
			attribute.String("decision", out.decision), attribute.String("reason", out.reason), attribute.String("rule", out.rule)))
	}
	// A dry run changes nothing, so it leaves no Event either.
	if o.Events == nil || out.decision == DecisionAllowed || (req.DryRun != nil && *req.DryRun) {
		return
	}
	reason, note := ReasonDenied, dec.Message()
	if out.decision == DecisionWarned {
		reason = ReasonWarned
		note = fmt.Sprint(dec.Warnings)
	}
	podName := pod.Name
	if podName == "" {
		podName = pod.GenerateName + "*"
	}
	note = fmt.Sprintf("pod %s (%s): %s", podName, req.Operation, note)
	if len(note) > maxNote {
		note = strings.ToValidUTF8(note[:maxNote-3], "") + "..." // no rune cut in half
	}
	if o.EventLimit != nil && !o.EventLimit.Allow() {
		if o.Metrics != nil {
			o.Metrics.dropped.Add(ctx, 1)
		}
		return
	}
	o.Events.Eventf(regarding(req.Namespace, pod), nil, corev1.EventTypeWarning, reason, "Admit", "%s", note)
}

// regarding is the object an admission Event is about: the Pod's
// controller (its ReplicaSet, Job, TaskRun, ...), else its first owner,
// else its Namespace.
func regarding(ns string, pod *corev1.Pod) *corev1.ObjectReference {
	refs := pod.OwnerReferences
	for i, r := range refs {
		if r.Controller != nil && *r.Controller {
			refs = refs[i : i+1]
			break
		}
	}
	if len(refs) > 0 {
		r := refs[0]
		return &corev1.ObjectReference{APIVersion: r.APIVersion, Kind: r.Kind, Name: r.Name, UID: r.UID, Namespace: ns}
	}
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns, Namespace: ns}
}
