package ordinal

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/leaderelection"

	"github.com/stepseal/stepseal/pkg/reject"
)

// The environment knative's StatefulSet elector reads.
const (
	EnvOrdinal = "STATEFUL_CONTROLLER_ORDINAL"
	EnvService = "STATEFUL_SERVICE_NAME"
)

var (
	// ErrOutOfRange: the replica's ordinal is not below the configured
	// buckets; no bucket is this replica's (knative would fall back to
	// Leases).
	ErrOutOfRange = reject.Sentinel(reject.ErrPolicy, "ordinal out of range of the leader-election buckets")
	// ErrReplicasBuckets: the StatefulSet's replicas differ from the
	// buckets: some bucket would be reconciled by no replica, or a replica
	// would have none.
	ErrReplicasBuckets = reject.Sentinel(reject.ErrMismatch, "StatefulSet replicas differ from the leader-election buckets")
)

// Mode is the StatefulSet mode's identity from the environment.
type Mode struct {
	StatefulSet string // the Pod name without its ordinal
	Ordinal     int
	Service     string
}

// FromEnv reads the StatefulSet mode from getenv: nil when neither variable
// is set (the standard, Lease-based mode); an error (reject.ErrMalformed)
// when only one is set or the ordinal does not parse as knative parses it
// (<name>-<non-negative integer>).
func FromEnv(getenv func(string) string) (*Mode, error) {
	pod, svc := getenv(EnvOrdinal), getenv(EnvService)
	if pod == "" && svc == "" {
		return nil, nil
	}
	if pod == "" || svc == "" {
		return nil, fmt.Errorf("%w: StatefulSet mode needs both %s and %s (got %s=%q, %s=%q)",
			reject.ErrMalformed, EnvOrdinal, EnvService, EnvOrdinal, pod, EnvService, svc)
	}
	i := strings.LastIndex(pod, "-")
	if i <= 0 {
		return nil, fmt.Errorf("%w: %s=%q is not <statefulset>-<ordinal>", reject.ErrMalformed, EnvOrdinal, pod)
	}
	n, err := strconv.Atoi(pod[i+1:])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: %s=%q is not <statefulset>-<ordinal>", reject.ErrMalformed, EnvOrdinal, pod)
	}
	return &Mode{StatefulSet: pod[:i], Ordinal: n, Service: svc}, nil
}

// CheckBuckets refuses an ordinal not below buckets (ErrOutOfRange).
func (m *Mode) CheckBuckets(buckets uint32) error {
	if m.Ordinal >= int(buckets) {
		return fmt.Errorf("%w: %s=%s-%d has ordinal %d, ConfigMap %s has buckets %d: replica i reconciles bucket i, so ordinals must be 0..%d (set buckets to the StatefulSet's replicas)",
			ErrOutOfRange, EnvOrdinal, m.StatefulSet, m.Ordinal, m.Ordinal, leaderelection.ConfigMapName(), buckets, int(buckets)-1)
	}
	return nil
}

// CheckReplicas reads the StatefulSet in namespace and refuses replicas
// other than buckets (ErrReplicasBuckets); reject.ErrUnavailable when it
// cannot be read.
func (m *Mode) CheckReplicas(ctx context.Context, kube kubernetes.Interface, namespace string, buckets uint32) error {
	ss, err := kube.AppsV1().StatefulSets(namespace).Get(ctx, m.StatefulSet, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%w: reading StatefulSet %s/%s to check its replicas against buckets %d: %v",
			reject.ErrUnavailable, namespace, m.StatefulSet, buckets, err)
	}
	replicas := int32(1) // the API's default
	if ss.Spec.Replicas != nil {
		replicas = *ss.Spec.Replicas
	}
	if int64(replicas) != int64(buckets) {
		return fmt.Errorf("%w: StatefulSet %s/%s has replicas %d, ConfigMap %s has buckets %d: change both together",
			ErrReplicasBuckets, namespace, m.StatefulSet, replicas, leaderelection.ConfigMapName(), buckets)
	}
	return nil
}

// Check is FromEnv, then CheckBuckets and CheckReplicas in StatefulSet
// mode; nil in the standard mode.
func Check(ctx context.Context, kube kubernetes.Interface, namespace string, buckets uint32, getenv func(string) string) (*Mode, error) {
	m, err := FromEnv(getenv)
	if err != nil || m == nil {
		return nil, err
	}
	if err := m.CheckBuckets(buckets); err != nil {
		return nil, err
	}
	if err := m.CheckReplicas(ctx, kube, namespace, buckets); err != nil {
		return nil, err
	}
	return m, nil
}
