// Package admissionconfig holds the admission webhook's release YAML (the
// *.yaml files here: its ServiceAccount and RBAC, policy ConfigMap, empty
// certificate Secret, Deployment, PodDisruptionBudget, Service and the two
// webhook configurations; hack/release.sh resolves them with ko into
// admission.yaml) and the tests that prove it on a real kube-apiserver: the
// RBAC grants what the webhook uses and nothing more, knative's
// certificates controller fills the Secret and its CA reaches both
// configurations, the apiserver's calls succeed through a certificate
// rotation, exempt namespaces work with no webhook running, and refusals
// are counted and recorded as Events. It has no Go API.
package admissionconfig
