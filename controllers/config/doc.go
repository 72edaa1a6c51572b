// Package config holds the controller's release YAML (the *.yaml files here,
// resolved with ko into one release.yaml by hack/release.sh) and the tests
// that prove it installs: ko builds the image and names it by digest; the
// controller binary, running with nothing but the ServiceAccount token the
// YAML's RBAC grants, signs TaskRuns and PipelineRuns on a real API server
// and is denied everything else; a SIGKILLed leader's Leases pass to the
// other replica without any run signed twice; the release ships no Secret,
// so re-applying it (client-side or server-side kubectl apply) leaves the
// operator's signing Secret as it was, and a controller started before the
// Secret exists signs once it is created. It has no Go API.
package config
