// Package admission decides whether a Pod's images may run: every image
// field (containers, initContainers, ephemeralContainers, image volumes)
// must name a digest that an admission rule covers and whose requirement
// holds — a VSA from the trusted verifier, a cosign signature by a trusted
// key, or a pinned digest — and an encrypted image must be one this
// platform is authorised for. An image no rule covers is denied without
// contacting its registry. Handler serves the decision (and tag-to-digest
// resolution) as a Kubernetes AdmissionReview v1 webhook, and
// WorkloadHandler warns (never denies) about the Pod templates of
// Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs
// whose Pods it would deny; Run serves it in
// a cluster (policy from a ConfigMap, serving certificate from the Secret
// knative's certificates controller renews, CA kept in the webhook
// configurations by CAInjector), and Observer records metrics, Events on
// the refused Pod's owner and audit annotations.
package admission
