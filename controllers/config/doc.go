// Package config holds the controller's release YAML (the *.yaml files here,
// resolved with ko into one release.yaml by hack/release.sh) and the tests
// that prove it installs: ko builds the image and names it by digest; the
// controller binary, running with nothing but the ServiceAccount token the
// YAML's RBAC grants, signs TaskRuns and PipelineRuns on a real API server
// and is denied everything else; and a SIGKILLed leader's Leases pass to the
// other replica without any run signed twice. It has no Go API.
package config
