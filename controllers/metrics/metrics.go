package metrics

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Kinds of runs, the value of the "kind" attribute.
const (
	KindTaskRun     = "taskrun"
	KindPipelineRun = "pipelinerun"
)

// Instrument names (OpenTelemetry). The Prometheus exporter adds the unit
// and _total suffixes.
const (
	NameSigned  = "stepseal.signed"
	NameFailed  = "stepseal.failed"
	NameRetries = "stepseal.retries"
	NameLatency = "stepseal.signing.latency"
)

// LatencyBuckets are the histogram boundaries in seconds, from an idle
// controller (well under a second) to a backlog of minutes.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// Recorder records signing outcomes. The zero value and a nil *Recorder
// record nothing, so reconcilers built without metrics need no checks.
type Recorder struct {
	signed, failed, retries metric.Int64Counter
	latency                 metric.Float64Histogram
}

// New creates the instruments on mp (sharedmain installs its provider as
// otel's global one: pass otel.GetMeterProvider()).
func New(mp metric.MeterProvider) (*Recorder, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/stepseal/stepseal/controllers")
	var r Recorder
	var err error
	if r.signed, err = m.Int64Counter(NameSigned,
		metric.WithDescription("Runs whose attestations every backend accepted and that were annotated stepseal.dev/signed=true"),
		metric.WithUnit("{run}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameSigned, err)
	}
	if r.failed, err = m.Int64Counter(NameFailed,
		metric.WithDescription("Runs annotated stepseal.dev/signed=failed (signing given up)"),
		metric.WithUnit("{run}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameFailed, err)
	}
	if r.retries, err = m.Int64Counter(NameRetries,
		metric.WithDescription("Failed signing attempts that were scheduled for a retry"),
		metric.WithUnit("{attempt}")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameRetries, err)
	}
	if r.latency, err = m.Float64Histogram(NameLatency,
		metric.WithDescription("Seconds from a run's completionTime to its stepseal.dev/signed=true annotation"),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("metric %s: %w", NameLatency, err)
	}
	return &r, nil
}

// Signed records a run of kind annotated signed=true at signedAt; completed
// is its completionTime (zero: no latency is recorded).
func (r *Recorder) Signed(ctx context.Context, kind string, completed, signedAt time.Time) {
	if r == nil || r.signed == nil {
		return
	}
	attrs := metric.WithAttributes(attribute.String("kind", kind))
	r.signed.Add(ctx, 1, attrs)
	if !completed.IsZero() {
		d := signedAt.Sub(completed).Seconds()
		if d < 0 { // clock skew between the apiserver's writer and us
			d = 0
		}
		r.latency.Record(ctx, d, attrs)
	}
}

// Failed records a run of kind annotated signed=failed.
func (r *Recorder) Failed(ctx context.Context, kind string) {
	if r == nil || r.failed == nil {
		return
	}
	r.failed.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
}

// Retry records a failed attempt of a run of kind that will be retried.
func (r *Recorder) Retry(ctx context.Context, kind string) {
	if r == nil || r.retries == nil {
		return
	}
	r.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
}
