package taskrun

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/leaderelection"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// putLog records which replica stored entries of which run.
type putLog struct {
	mu    sync.Mutex
	byRun map[string]map[string]int // run ID -> replica -> Puts
}

func (p *putLog) add(replica, runID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRun[runID] == nil {
		p.byRun[runID] = map[string]int{}
	}
	p.byRun[runID][replica]++
}

type loggingStore struct {
	store.Store
	replica string
	log     *putLog
}

func (s loggingStore) Put(ctx context.Context, e store.Entry) (string, error) {
	s.log.add(s.replica, e.RunID)
	return s.Store.Put(ctx, e)
}

// startReplica runs one controller replica in-process the way sharedmain
// runs it with leader election on (knative's standard elector over Leases
// in the system namespace, buckets buckets).
func startReplica(t *testing.T, ctx context.Context, cfg *rest.Config, sysNS, id string, buckets uint32, log *putLog) {
	t.Helper()
	rctx := logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar().Named(id))
	rctx = leaderelection.WithStandardLeaderElectorBuilder(rctx, kubernetes.NewForConfigOrDie(cfg), leaderelection.ComponentConfig{
		Component: "stepseal-controller", Buckets: buckets, Identity: id,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second,
	})
	controllertest.RunControllers(rctx, t, cfg, sysNS, func(impls []*controller.Impl) {
		k := impls[0].Reconciler.(*lifecycle.Reconciler[*v1.TaskRun]).Kind.(*Kind)
		k.OpenBackends = func(c *settings.Config) ([]lifecycle.Backend, error) {
			ds, err := dirstore.Open(c.StoreDir)
			if err != nil {
				return nil, err
			}
			return []lifecycle.Backend{{Name: "dir", Store: loggingStore{Store: ds, replica: id, log: log}}}, nil
		}
	}, NewController(controllertest.NewShared(t))) // one process each
}

// TestIntegrationLeaderElection runs two replicas with knative's leader
// election (two buckets, Leases in the system namespace) against the real
// apiserver: each of 20 TaskRuns is stored by exactly one replica, exactly
// once (a link per step and one provenance).
func TestIntegrationLeaderElection(t *testing.T) {
	api := controllertest.StartAPI(t, 3*time.Minute, nil)
	ctx, ns, sysNS, kube, tekton, dir, pub := api.Ctx, api.NS, api.SystemNS, api.Kube, api.Tekton, api.StoreDir, api.Pub

	log := &putLog{byRun: map[string]map[string]int{}}
	const buckets = 2
	// Whichever replica starts first would take both buckets; hand one to
	// each, as two long-running replicas end up, by creating the Leases
	// held by them (an elector renews a Lease it already holds).
	replicas := []string{"replica-a", "replica-b"}
	now := metav1.NewMicroTime(time.Now())
	for i, id := range replicas {
		if _, err := kube.CoordinationV1().Leases(sysNS).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s.%02d-of-%02d", "stepseal-controller", ControllerName, i, buckets), Namespace: sysNS},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &id, LeaseDurationSeconds: ptr32(15), AcquireTime: &now, RenewTime: &now,
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range replicas {
		startReplica(t, ctx, api.Config(), sysNS, id, buckets, log)
	}

	const n = 20
	steps := []v1.Step{{Name: "fetch", Image: "alpine:3"}, {Name: "build", Image: "golang:1.26"}}
	var trs []*v1.TaskRun
	for i := range n {
		tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("le-%02d", i), Namespace: ns},
			Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: steps}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr, err = kubetest.FinishTaskRun(ctx, tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i-1)}); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	for _, tr := range trs {
		kubetest.WaitTaskRunSigned(ctx, t, tekton, ns, tr.Name)
	}

	leases, err := kube.CoordinationV1().Leases(sysNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, l := range leases.Items {
		if l.Spec.HolderIdentity != nil {
			held = append(held, l.Name+"="+*l.Spec.HolderIdentity)
		}
	}
	sort.Strings(held)
	t.Logf("leases: %v", held)
	if len(held) < buckets {
		t.Errorf("%d held leases, want at least the %d TaskRun buckets", len(held), buckets)
	}

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	perReplica := map[string]int{}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, tr := range trs {
		puts := log.byRun[string(tr.UID)]
		if len(puts) != 1 {
			t.Errorf("%s: stored by %d replicas (%v), want exactly one", tr.Name, len(puts), puts)
		}
		for id := range puts {
			perReplica[id]++
		}
		verifyStored(t, ds, pub, string(tr.UID), []string{tr.Name + ".fetch", tr.Name + ".build"}, 1)
	}
	t.Logf("TaskRuns signed per replica: %v", perReplica)
	for _, id := range replicas {
		if perReplica[id] == 0 {
			t.Errorf("%s, leading a bucket, signed no TaskRun: %v", id, perReplica)
		}
	}
	all, err := ds.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n*(len(steps)+1) {
		t.Errorf("%d entries stored, want %d", len(all), n*(len(steps)+1))
	}
}

func ptr32(i int32) *int32 { return &i }
