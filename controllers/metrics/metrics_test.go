package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	corev1 "k8s.io/api/core/v1"
	o11yconfigmap "knative.dev/pkg/observability/configmap"
	knmetrics "knative.dev/pkg/observability/metrics"
	"sigs.k8s.io/yaml"
)

func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func sumFor(t *testing.T, a metricdata.Aggregation, kind string) int64 {
	t.Helper()
	s, ok := a.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("aggregation %T, want Sum[int64]", a)
	}
	for _, dp := range s.DataPoints {
		if v, _ := dp.Attributes.Value(attribute.Key("kind")); v.AsString() == kind {
			return dp.Value
		}
	}
	return 0
}

func TestRecorder(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	r, err := New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.Signed(ctx, KindTaskRun, done, done.Add(1500*time.Millisecond))
	r.Signed(ctx, KindTaskRun, done, done.Add(-time.Second)) // skew: counted as 0
	r.Signed(ctx, KindPipelineRun, time.Time{}, done)        // no completionTime: no latency
	r.Retry(ctx, KindTaskRun)
	r.Retry(ctx, KindTaskRun)
	r.Failed(ctx, KindPipelineRun)

	got := collect(t, reader)
	for _, c := range []struct {
		name, kind string
		want       int64
	}{
		{NameSigned, KindTaskRun, 2}, {NameSigned, KindPipelineRun, 1},
		{NameRetries, KindTaskRun, 2}, {NameRetries, KindPipelineRun, 0},
		{NameFailed, KindPipelineRun, 1}, {NameFailed, KindTaskRun, 0},
	} {
		if v := sumFor(t, got[c.name], c.kind); v != c.want {
			t.Errorf("%s{kind=%s} = %d, want %d", c.name, c.kind, v, c.want)
		}
	}
	h, ok := got[NameLatency].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: %T, want Histogram[float64]", NameLatency, got[NameLatency])
	}
	if len(h.DataPoints) != 1 {
		t.Fatalf("%d latency series, want 1 (taskrun only)", len(h.DataPoints))
	}
	dp := h.DataPoints[0]
	if dp.Count != 2 || dp.Sum != 1.5 {
		t.Errorf("latency count %d sum %v, want 2 and 1.5", dp.Count, dp.Sum)
	}
	if max, _ := dp.Max.Value(); max != 1.5 {
		t.Errorf("latency max %v, want 1.5", max)
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *Recorder
	ctx := context.Background()
	r.Signed(ctx, KindTaskRun, time.Now(), time.Now())
	r.Failed(ctx, KindTaskRun)
	r.Retry(ctx, KindTaskRun)
}

// The shipped config-observability turns on knative's Prometheus exporter,
// and the instruments appear on its /metrics under the documented names.
func TestReleasedConfigExposesPrometheus(t *testing.T) {
	b, err := os.ReadFile("../config/300-observability.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != o11yconfigmap.Name() || cm.Namespace != "stepseal" {
		t.Fatalf("ConfigMap %s/%s, want stepseal/%s", cm.Namespace, cm.Name, o11yconfigmap.Name())
	}
	cfg, err := o11yconfigmap.Parse(&cm)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Protocol != knmetrics.ProtocolPrometheus {
		t.Fatalf("metrics-protocol %q, want prometheus", cfg.Metrics.Protocol)
	}

	// The shipped config serves on :9090; the test uses a free port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	mc := cfg.Metrics
	mc.Endpoint = addr
	ctx := context.Background()
	mp, err := knmetrics.NewMeterProvider(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(ctx)
	r, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.Signed(ctx, KindTaskRun, now.Add(-2*time.Second), now)
	r.Failed(ctx, KindTaskRun)
	r.Retry(ctx, KindTaskRun)

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`stepseal_signed_total{kind="taskrun"`,
		`stepseal_failed_total{kind="taskrun"`,
		`stepseal_retries_total{kind="taskrun"`,
		`stepseal_signing_latency_seconds_bucket{kind="taskrun"`,
		`stepseal_signing_latency_seconds_count{kind="taskrun"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
