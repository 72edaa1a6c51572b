package config

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/leaderelection"

	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/kubetest"
)

// TestChaosLeaseHandover runs two replicas of the controller binary as the
// release configures them (leader election with config-leader-election's 4
// buckets and 15 s Leases, the ServiceAccount's token), SIGKILLs the one
// holding the TaskRun Leases while TaskRuns keep finishing, and checks that
// the other takes every Lease over within lease-duration plus a retry period
// and a margin, and that every TaskRun — finished before, during and after
// the handover — is signed exactly once with exactly one link per step and
// one provenance stored.
func TestChaosLeaseHandover(t *testing.T) {
	s := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	le := s.leaderElection(ctx, t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	logDir := t.TempDir()

	// Replica a alone takes every bucket; b starts once it has, as a second
	// replica joining a running one (or one restarted by its Deployment).
	a := startController(t, bin, kubeconfig, logDir, "replica-a")
	idA := waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) {
		return sameHolder(holders)
	})
	b := startController(t, bin, kubeconfig, logDir, "replica-b")
	idB := waitLogged(ctx, t, b, "stepseal-taskrun.00-of-")

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	var created atomic.Int64
	create := func(prefix string, i int) {
		if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("%s-%03d", prefix, i), int(created.Add(1))); err != nil {
			t.Error(err)
		}
	}
	const before = 20
	for i := range before {
		create("before", i)
	}
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, before)

	// The leader is whoever holds the TaskRun Leases now; its process is
	// the one whose log names that identity.
	holders, err := leaseHolders(ctx, s.kube)
	if err != nil {
		t.Fatal(err)
	}
	leaderID, ok := sameHolder(holders)
	if !ok {
		t.Fatalf("TaskRun Leases held by several replicas: %v", holders)
	}
	leader, other := a, b
	if bytes.Contains(b.output(t), []byte(leaderID)) {
		leader, other = b, a
	}
	if !bytes.Contains(leader.output(t), []byte(leaderID)) {
		t.Fatalf("no replica's log names the Lease holder %s", leaderID)
	}
	if leader != a || leaderID != idA {
		t.Fatalf("leader %s (%s), want replica-a (%s) which started first", leader.name, leaderID, idA)
	}

	// Keep TaskRuns finishing, five a second, across the kill; those
	// created after it are named after-NNN (only the survivor can sign them).
	stop := make(chan struct{})
	var afterKill atomic.Bool
	var producer sync.WaitGroup
	producer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if afterKill.Load() {
				create("after", i)
			} else {
				create("during", i)
			}
		}
	})
	time.Sleep(time.Second) // some TaskRuns in flight at the kill
	killed := time.Now()
	leader.kill()
	afterKill.Store(true)
	t.Logf("SIGKILLed %s (Lease holder %s); %d TaskRuns signed", leader.name, leaderID, tw.SignedCount())

	takeover := waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) {
		id, ok := sameHolder(holders)
		return id, ok && id == idB
	})
	handover := time.Since(killed)
	if takeover != idB {
		t.Fatalf("Leases went to %s, want replica-b's %s", takeover, idB)
	}
	resumed := tw.FirstSigned(ctx, t, "after-").Sub(killed)
	// Let TaskRuns finish under the new leader for a while too.
	time.Sleep(3 * time.Second)
	close(stop)
	producer.Wait()
	n := int(created.Load())
	drain := time.Now()
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, n)
	t.Logf("all %d TaskRuns signed %v after the last one finished", n, time.Since(drain).Round(time.Millisecond))

	// The survivor sees the Lease expire lease-duration after it last saw
	// it renewed (up to one retry period after the kill) and tries again
	// every retry period (client-go adds up to 20% jitter to each).
	bound := le.LeaseDuration + 2*le.RetryPeriod*6/5 + 3*time.Second
	t.Logf("handover: replica-b held all %d TaskRun Leases %v after the kill, signed the first TaskRun created after it %v after it (lease-duration %v, retry-period %v; bound %v)",
		le.Buckets, handover.Round(time.Millisecond), resumed.Round(time.Millisecond), le.LeaseDuration, le.RetryPeriod, bound)
	if handover > bound {
		t.Errorf("handover took %v, want at most lease-duration + 2 retry periods (+20%% jitter) + 3 s = %v", handover, bound)
	}
	if !other.running() {
		t.Fatalf("%s exited: %v", other.name, other.cmd.ProcessState)
	}
	verifyStore(ctx, t, s.tekton, ns, s.storeDir, s.key.pub)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, n)
	t.Logf("%d TaskRuns (%d before the kill) each signed once and stored once", n, before)
}

// leaderElection reads the applied config-leader-election as knative does.
func (s *setup) leaderElection(ctx context.Context, t *testing.T) *leaderelection.Config {
	t.Helper()
	cm, err := s.kube.CoreV1().ConfigMaps(systemNS).Get(ctx, leaderelection.ConfigMapName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := leaderelection.NewConfigFromConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// leaseHolders returns the holder of every TaskRun controller Lease.
func leaseHolders(ctx context.Context, kube kubernetes.Interface) (map[string]string, error) {
	leases, err := kube.CoordinationV1().Leases(systemNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	held := map[string]string{}
	for _, l := range leases.Items {
		if strings.Contains(l.Name, "."+taskrun.ControllerName+".") && l.Spec.HolderIdentity != nil {
			held[l.Name] = *l.Spec.HolderIdentity
		}
	}
	return held, nil
}

// sameHolder reports the one identity holding every Lease in holders.
func sameHolder(holders map[string]string) (string, bool) {
	id := ""
	for _, h := range holders {
		if id != "" && h != id {
			return "", false
		}
		id = h
	}
	return id, id != ""
}

// waitTaskRunLeases polls the TaskRun Leases until all buckets exist and
// done accepts their holders, and returns what done returned.
func waitTaskRunLeases(ctx context.Context, t *testing.T, kube kubernetes.Interface, buckets uint32, done func(map[string]string) (string, bool)) string {
	t.Helper()
	var holders map[string]string
	for {
		var err error
		holders, err = leaseHolders(ctx, kube)
		if err == nil && len(holders) == int(buckets) {
			if id, ok := done(holders); ok {
				return id
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("TaskRun Leases not as expected in time: %v (last error %v)", holders, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLogged waits until p logs the identity it competes for lease with and
// returns that identity.
func waitLogged(ctx context.Context, t *testing.T, p *controllerProc, lease string) string {
	t.Helper()
	marker := []byte(lease)
	for {
		for _, line := range bytes.Split(p.output(t), []byte("\n")) {
			if i := bytes.Index(line, marker); i >= 0 {
				// ... 00-of-04 will run in leader-elected mode with id \"ID\"
				if j := bytes.Index(line, []byte(`with id \"`)); j > i {
					id := line[j+len(`with id \"`):]
					if k := bytes.Index(id, []byte(`\"`)); k > 0 {
						return string(id[:k])
					}
				}
			}
		}
		if !p.running() || ctx.Err() != nil {
			t.Fatalf("%s never logged its identity for %s", p.name, lease)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
