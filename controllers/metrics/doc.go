// Package metrics records what the stepseal controllers did as OpenTelemetry
// instruments: runs signed, runs given up, retried attempts, and the latency
// from a run's completionTime to the signed annotation. knative's sharedmain
// exports them; with metrics-protocol "prometheus" in config-observability
// they are served on :9090/metrics (METRICS_PROMETHEUS_PORT overrides the
// port) as stepseal_signed_total, stepseal_failed_total,
// stepseal_retries_total and stepseal_signing_latency_seconds.
package metrics
