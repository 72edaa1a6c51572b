package config

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/leaderelection"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/ordinal"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestStatefulSetOrdinals runs the controller binary in the StatefulSet mode
// of optional/statefulset (applied to the apiserver as shipped; each
// process gets the env its Pod would: the literal values, and
// STATEFUL_CONTROLLER_ORDINAL = <StatefulSet>-<i> as the downward API gives
// metadata.name), on the postgres backend. Replica 0 starts alone and signs
// exactly the early TaskRuns of its bucket, the others wait unsigned;
// replica 1, started after that, signs the rest and its share of later
// TaskRuns. Each replica signs exactly the TaskRuns of its bucket (as
// knative hashes keys to the StatefulSet's buckets), both sign some, every
// TaskRun is signed and stored once, and no Lease is taken. For contrast,
// the same staggered start in the standard (Lease) mode leaves the late
// replica nothing. Then the refusals: ordinal 2 with buckets 2, and
// replicas 3 with buckets 2, each exits non-zero naming both numbers before
// signing anything.
func TestStatefulSetOrdinals(t *testing.T) {
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	dir := t.TempDir()
	pgb := configurePostgres(t, s, pg, pg.NewDatabase(t), dir, nil)

	sm := applyStatefulSetMode(ctx, t, s)
	if sm.buckets != 2 || sm.replicas != 2 {
		t.Fatalf("optional/statefulset ships replicas %d, buckets %d; this test expects 2 and 2", sm.replicas, sm.buckets)
	}
	// The RBAC the mode adds: its own StatefulSet, by name, read only.
	for _, c := range []struct {
		verb, name string
		want       bool
	}{{"get", sm.name, true}, {"get", "other", false}, {"list", "", false}, {"update", sm.name, false}} {
		a := access{c.verb, "apps", "statefulsets", "", systemNS}
		if got := s.allowed(ctx, t, a, ns, c.name); got != c.want {
			t.Errorf("%s allowed %s %q: %v, want %v", saUser, a, c.name, got, c.want)
		}
	}
	bucket0 := statefulSetBucket(t, sm, 0)

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	create := func(prefix string, n int, from int) (mine [2]int) {
		for i := range n {
			name := fmt.Sprintf("%s-%03d", prefix, i)
			if _, err := finishTaskRun(ctx, s.tekton, ns, name, from+i); err != nil {
				t.Fatal(err)
			}
			if bucket0.Has(types.NamespacedName{Namespace: ns, Name: name}) {
				mine[0]++
			} else {
				mine[1]++
			}
		}
		return mine
	}
	r0 := startControllerEnv(t, sm.env(0), bin, kubeconfig, dir, "replica-0")
	early := create("early", 20, 0)
	if early[0] == 0 || early[1] == 0 {
		t.Fatalf("the early TaskRuns hash to the buckets %v; the test needs both non-empty", early)
	}
	waitSignedBy(ctx, t, r0, early[0])
	if got := tw.SignedCount(); got != early[0] {
		t.Errorf("%d early TaskRuns signed with only replica 0 running, want the %d of its bucket", got, early[0])
	}
	r1 := startControllerEnv(t, sm.env(1), bin, kubeconfig, dir, "replica-1")
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 20)
	late := create("late", 20, 20)
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 40)
	r0.stop()
	r1.stop()

	want := [2]int{early[0] + late[0], early[1] + late[1]}
	for i, p := range []*controllerProc{r0, r1} {
		keys := signedKeys(t, p)
		wrong := 0
		for _, k := range keys {
			nsName := strings.SplitN(k, "/", 2)
			if bucket0.Has(types.NamespacedName{Namespace: nsName[0], Name: nsName[1]}) != (i == 0) {
				wrong++
			}
		}
		if len(keys) != want[i] || countSigned(t, p) != want[i] || wrong != 0 {
			t.Errorf("replica %d signed %d TaskRuns (%d signed lines), %d of another bucket; want the %d of bucket %d",
				i, len(keys), countSigned(t, p), wrong, want[i], i)
		}
		if !bytes.Contains(p.output(t), fmt.Appendf(nil, "StatefulSet mode: replica %d of StatefulSet %s reconciles bucket %d of 2", i, sm.name, i)) {
			t.Errorf("replica %d did not log its StatefulSet-mode bucket", i)
		}
	}
	t.Logf("replica 0 alone signed %d of 20 early TaskRuns; with replica 1 started after that, signed per replica %d and %d of 40 (the buckets' %v)",
		early[0], countSigned(t, r0), countSigned(t, r1), want)
	leases, err := s.kube.CoordinationV1().Leases(systemNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		t.Errorf("Lease %s exists in the StatefulSet mode (holder %v)", l.Name, l.Spec.HolderIdentity)
	}

	st := pgb.readOnly(ctx, t)
	verifyEntries(ctx, t, s.tekton, ns, st, s.key.pub)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, 40)

	// Contrast: the standard mode (Leases), the second replica started once
	// the first holds every TaskRun Lease, gets none and signs nothing.
	t.Run("standard-mode-late-replica", func(t *testing.T) {
		ns := s.cluster.Namespace(t)
		le := s.leaderElection(ctx, t)
		a := startController(t, bin, kubeconfig, dir, "standard-0")
		waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(h map[string]string) (string, bool) { return sameHolder(h) })
		b := startController(t, bin, kubeconfig, dir, "standard-1")
		waitLogged(ctx, t, b, "stepseal-taskrun.00-of-")
		for i := range 10 {
			if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("std-%03d", i), 100+i); err != nil {
				t.Fatal(err)
			}
		}
		kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 10)
		a.stop()
		b.stop()
		t.Logf("standard mode, %d buckets: the first replica signed %d, the late one %d", le.Buckets, countSigned(t, a), countSigned(t, b))
		if countSigned(t, a) != 10 || countSigned(t, b) != 0 {
			t.Errorf("standard mode: first replica signed %d, late replica %d; want 10 and 0 (Leases do not rebalance)", countSigned(t, a), countSigned(t, b))
		}
		if err := s.kube.CoordinationV1().Leases(systemNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	refused := func(t *testing.T, name string, i int, msg string) {
		t.Helper()
		p := startControllerEnv(t, sm.env(i), bin, kubeconfig, dir, name)
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			t.Fatalf("%s still running after a minute: want it to refuse to start", name)
		}
		out := p.output(t)
		for _, line := range bytes.Split(out, []byte("\n")) {
			if bytes.Contains(line, []byte("refusing to start")) {
				t.Logf("%s: %s", name, line)
			}
		}
		if code := p.cmd.ProcessState.ExitCode(); code == 0 || !bytes.Contains(out, []byte("refusing to start")) || !bytes.Contains(out, []byte(msg)) {
			t.Errorf("%s exited %d; want non-zero, logging %q and %q:\n%s", name, code, "refusing to start", msg, tail(out))
		}
		if n := countSigned(t, p); n != 0 {
			t.Errorf("%s signed %d runs before exiting", name, n)
		}
	}
	t.Run("ordinal-out-of-range", func(t *testing.T) {
		refused(t, "replica-2", 2, "has ordinal 2, ConfigMap config-leader-election-statefulset has buckets 2")
	})
	t.Run("replicas-not-buckets", func(t *testing.T) {
		scale(ctx, t, s, sm.name, 3)
		defer scale(ctx, t, s, sm.name, 2)
		refused(t, "replica-0-of-3", 0, "has replicas 3, ConfigMap config-leader-election-statefulset has buckets 2")
	})
}

// statefulSetMode is optional/statefulset as applied.
type statefulSetMode struct {
	name              string   // the StatefulSet's
	literal           []string // the container's env with literal values
	replicas, buckets int
}

// env is the environment of the StatefulSet's Pod i.
func (m *statefulSetMode) env(i int) []string {
	return append(append([]string(nil), m.literal...), fmt.Sprintf("%s=%s-%d", ordinal.EnvOrdinal, m.name, i))
}

// applyStatefulSetMode applies optional/statefulset as the admin and reads
// back what the controller's Pods would run with; the objects are deleted
// when the test ends (the PersistentVolumeClaim, the release's, is kept).
func applyStatefulSetMode(ctx context.Context, t *testing.T, s *setup) *statefulSetMode {
	t.Helper()
	objs := kubetest.Objects(t, "optional/statefulset/*.yaml")
	kubetest.Apply(ctx, t, s.cluster.Config(), fieldManager, objs)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, o := range objs {
			var err error
			switch o.GetKind() {
			case "StatefulSet":
				err = s.kube.AppsV1().StatefulSets(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			case "Service":
				err = s.kube.CoreV1().Services(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			case "ConfigMap":
				err = s.kube.CoreV1().ConfigMaps(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			case "Role":
				err = s.kube.RbacV1().Roles(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			case "RoleBinding":
				err = s.kube.RbacV1().RoleBindings(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	})
	var sts *appsv1.StatefulSet
	for _, o := range objs {
		if o.GetKind() == "StatefulSet" {
			var err error
			if sts, err = s.kube.AppsV1().StatefulSets(systemNS).Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sts == nil || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("optional/statefulset ships no StatefulSet of one container")
	}
	m := &statefulSetMode{name: sts.Name, replicas: int(*sts.Spec.Replicas)}
	leName, service, ordinalFromName := "", "", false
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.Name == ordinal.EnvOrdinal:
			ordinalFromName = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		case e.Value != "":
			m.literal = append(m.literal, e.Name+"="+e.Value)
		}
		switch e.Name {
		case "CONFIG_LEADERELECTION_NAME":
			leName = e.Value
		case ordinal.EnvService:
			service = e.Value
		}
	}
	if !ordinalFromName || service != sts.Spec.ServiceName || leName == "" {
		t.Fatalf("StatefulSet %s: %s from metadata.name %v, %s %q (serviceName %q), CONFIG_LEADERELECTION_NAME %q",
			sts.Name, ordinal.EnvOrdinal, ordinalFromName, ordinal.EnvService, service, sts.Spec.ServiceName, leName)
	}
	svc, err := s.kube.CoreV1().Services(systemNS).Get(ctx, service, metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP != "None" {
		t.Fatalf("the StatefulSet's Service %s: %v, want headless", service, err)
	}
	cm, err := s.kube.CoreV1().ConfigMaps(systemNS).Get(ctx, leName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	le, err := leaderelection.NewConfigFromConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	m.buckets = int(le.Buckets)
	return m
}

// statefulSetBucket is the bucket knative gives the StatefulSet's Pod i (its
// env is set only while knative reads it: child processes do not inherit it).
func statefulSetBucket(t *testing.T, m *statefulSetMode, i int) reconciler.Bucket {
	t.Helper()
	env := append(m.env(i), "SYSTEM_NAMESPACE="+systemNS)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		old, had := os.LookupEnv(k)
		if err := os.Setenv(k, v); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if had {
				_ = os.Setenv(k, old)
			} else {
				_ = os.Unsetenv(k)
			}
		}()
	}
	b, _, err := leaderelection.NewStatefulSetBucketAndSet(m.buckets)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedKeys are the namespace/name of the runs p logged as signed.
func signedKeys(t *testing.T, p *controllerProc) []string {
	t.Helper()
	var keys []string
	for _, line := range bytes.Split(p.output(t), []byte("\n")) {
		if !bytes.Contains(line, []byte(`"entries":`)) {
			continue
		}
		var l struct {
			Key string `json:"knative.dev/key"`
		}
		if err := json.Unmarshal(line, &l); err != nil || l.Key == "" {
			t.Fatalf("%s: signed line without a key (%v): %s", p.name, err, line)
		}
		keys = append(keys, l.Key)
	}
	return keys
}

// waitSignedBy waits until p has logged n signed runs.
func waitSignedBy(ctx context.Context, t *testing.T, p *controllerProc, n int) {
	t.Helper()
	for countSigned(t, p) < n {
		if !p.running() || ctx.Err() != nil {
			t.Fatalf("%s signed %d runs, want %d", p.name, countSigned(t, p), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scale sets the StatefulSet's spec.replicas.
func scale(ctx context.Context, t *testing.T, s *setup, name string, replicas int) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := s.kube.AppsV1().StatefulSets(systemNS).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// tail is the end of a log, for an error message.
func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}
