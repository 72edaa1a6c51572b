// Package ordinal checks, before the controller starts, the StatefulSet mode
// of knative's leader election (controllers/config/optional/statefulset):
// with STATEFUL_CONTROLLER_ORDINAL (the Pod's name, <statefulset>-<i>) and
// STATEFUL_SERVICE_NAME set, replica i reconciles exactly bucket i of the
// configured buckets, without Leases. knative falls back to Lease election
// silently when the ordinal is out of range or a variable is missing, and a
// bucket no replica has is never reconciled, so Check refuses to start
// unless both variables are well formed, the ordinal is below the buckets
// and the StatefulSet's spec.replicas equals the buckets.
package ordinal
