package config

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// access is one request the controller's ServiceAccount makes or must not be
// able to make. Namespace "" is cluster-wide; "<other>" is a namespace of
// the test's own, "stepseal" the controller's.
type access struct {
	verb, group, resource, subresource, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	ns := a.namespace
	if ns == "" {
		ns = "(all namespaces)"
	}
	return fmt.Sprintf("%s %s in %s", a.verb, r, ns)
}

const otherNS = "<other>"

// What the controller does (watching the config and its Secrets, competing
// for Leases in stepseal; reading every TaskRun and PipelineRun, patching
// their metadata, removing its finalizer; recording Events): the release
// RBAC must grant exactly this much.
var needed = []access{
	{"list", "tekton.dev", "taskruns", "", ""},
	{"watch", "tekton.dev", "taskruns", "", ""},
	{"patch", "tekton.dev", "taskruns", "", otherNS},
	{"update", "tekton.dev", "taskruns", "finalizers", otherNS},
	{"list", "tekton.dev", "pipelineruns", "", ""},
	{"patch", "tekton.dev", "pipelineruns", "", otherNS},
	{"create", "", "events", "", otherNS},
	{"get", "tekton.dev", "tasks", "", otherNS},
	{"get", "tekton.dev", "pipelines", "", otherNS},
	{"get", "", "secrets", "", systemNS},
	{"watch", "", "secrets", "", systemNS},
	{"watch", "", "configmaps", "", systemNS},
	{"get", "", "configmaps", "", systemNS},
	// The record StepActions' measurements (controllers/taskrun measured.go).
	{"get", "", "pods", "log", otherNS},
	{"get", "coordination.k8s.io", "leases", "", systemNS},
	{"create", "coordination.k8s.io", "leases", "", systemNS},
	{"update", "coordination.k8s.io", "leases", "", systemNS},
}

// What a compromised controller must not be able to do: read Secrets or
// config elsewhere, rewrite or delete runs or forge their status, run
// anything, change its own configuration, keys or permissions, or mint
// tokens.
var forbidden = []access{
	{"get", "", "secrets", "", otherNS},
	{"list", "", "secrets", "", ""},
	{"get", "", "secrets", "", "kube-system"},
	{"get", "", "configmaps", "", otherNS},
	{"create", "tekton.dev", "taskruns", "", otherNS},
	{"update", "tekton.dev", "taskruns", "", otherNS},
	{"delete", "tekton.dev", "taskruns", "", otherNS},
	{"deletecollection", "tekton.dev", "taskruns", "", otherNS},
	{"patch", "tekton.dev", "taskruns", "status", otherNS},
	{"update", "tekton.dev", "taskruns", "status", otherNS},
	{"update", "tekton.dev", "pipelineruns", "", otherNS},
	{"delete", "tekton.dev", "pipelineruns", "", otherNS},
	{"patch", "tekton.dev", "pipelineruns", "status", otherNS},
	{"create", "tekton.dev", "tasks", "", otherNS},
	{"list", "tekton.dev", "tasks", "", otherNS},
	{"update", "tekton.dev", "tasks", "", otherNS},
	{"update", "tekton.dev", "pipelines", "", otherNS},
	{"create", "", "pods", "", otherNS},
	{"create", "", "pods", "", systemNS},
	{"create", "", "pods", "exec", otherNS},
	{"get", "", "pods", "exec", otherNS},
	{"create", "", "pods", "attach", otherNS},
	{"list", "", "pods", "", otherNS},
	{"delete", "", "pods", "", otherNS},
	{"update", "", "configmaps", "", systemNS},
	{"patch", "", "configmaps", "", systemNS},
	{"create", "", "secrets", "", systemNS},
	{"update", "", "secrets", "", systemNS},
	{"delete", "", "secrets", "", systemNS},
	{"create", "", "serviceaccounts", "token", systemNS},
	{"create", "coordination.k8s.io", "leases", "", otherNS},
	{"delete", "coordination.k8s.io", "leases", "", systemNS},
	{"patch", "coordination.k8s.io", "leases", "", systemNS},
	{"create", "rbac.authorization.k8s.io", "rolebindings", "", systemNS},
	{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", ""},
	{"list", "", "namespaces", "", ""},
	{"delete", "", "events", "", otherNS},
	// Only optional/statefulset grants reading the controller's own
	// StatefulSet (TestStatefulSetOrdinals); the release grants no workload.
	{"get", "apps", "statefulsets", "", systemNS},
	{"list", "apps", "statefulsets", "", systemNS},
	{"update", "apps", "statefulsets", "", systemNS},
	{"get", "apps", "deployments", "", systemNS},
}

// TestInstallLeastPrivilege applies the release YAML to a real
// kube-apiserver (RBAC authorization), runs the controller binary with only
// a token of the release's ServiceAccount, and checks that the RBAC is
// enough (TaskRuns and a PipelineRun are signed and stored, nothing in the
// log was forbidden), that it is no more than needed (SubjectAccessReviews
// for what the ServiceAccount must not do), and that the controller's log
// holds neither the signing key nor its password.
func TestInstallLeastPrivilege(t *testing.T) {
	s := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, prNS := s.cluster.Namespace(t), s.cluster.Namespace(t)

	for _, a := range needed {
		if !s.allowed(ctx, t, a, ns) {
			t.Errorf("%s is denied %s; the controller needs it", saUser, a)
		}
	}
	for _, a := range forbidden {
		if s.allowed(ctx, t, a, ns) {
			t.Errorf("%s is allowed %s", saUser, a)
		}
	}
	// By name: it updates the trust floor, and no other ConfigMap.
	for _, n := range []struct {
		name string
		want bool
	}{{"stepseal-trust", true}, {"stepseal-config", false}, {"config-leader-election", false}} {
		a := access{"update", "", "configmaps", "", systemNS}
		if got := s.allowed(ctx, t, a, ns, n.name); got != n.want {
			t.Errorf("%s allowed %s %s: %v, want %v", saUser, a, n.name, got, n.want)
		}
	}

	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	ctrl := startController(t, buildController(t), kubeconfig, t.TempDir(), "controller")
	start := time.Now()

	const n = 10
	for i := range n {
		if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("install-%02d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	pr := s.finishPipelineRun(ctx, t, prNS)
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, n)
	t.Logf("%d TaskRuns signed %v after the controller started", n, time.Since(start).Round(time.Millisecond))
	verifyStore(ctx, t, s.tekton, ns, s.storeDir, s.key.pub)
	s.waitPipelineRunSigned(ctx, t, pr)

	if !ctrl.running() {
		t.Fatalf("the controller exited: %v", ctrl.cmd.ProcessState)
	}
	ctrl.stop()
	out := ctrl.output(t)
	if m := regexp.MustCompile(`(?i).{0,200}(forbidden|unauthorized).{0,200}`).Find(out); m != nil {
		t.Errorf("the controller was refused something; its RBAC lacks a permission:\n%s", m)
	}
	for _, secret := range s.key.secrets {
		if bytes.Contains(out, secret) {
			t.Errorf("the controller's log (%s) contains signing key material", ctrl.log)
			break
		}
	}
	events, err := s.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events.Items {
		for _, secret := range s.key.secrets {
			if bytes.Contains([]byte(ev.Message), secret) {
				t.Errorf("Event %s contains signing key material", ev.Name)
			}
		}
	}
	t.Logf("controller log: %d bytes, %d Events in %s", len(out), len(events.Items), ns)
}

// allowed asks the apiserver (SubjectAccessReview, as the admin) whether the
// release's ServiceAccount may do a.
func (s *setup) allowed(ctx context.Context, t *testing.T, a access, other string, name ...string) bool {
	t.Helper()
	obj := ""
	if len(name) > 0 {
		obj = name[0]
	}
	ns := a.namespace
	if ns == otherNS {
		ns = other
	}
	r, err := s.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   saUser,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Name: obj,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

var childSteps = []v1.Step{{Name: "prepare", Image: "alpine:3"}, {Name: "build", Image: "golang:1.26"}}

// finishPipelineRun creates a PipelineRun with two child TaskRuns and
// finishes all three as Tekton would.
func (s *setup) finishPipelineRun(ctx context.Context, t *testing.T, ns string) *v1.PipelineRun {
	t.Helper()
	tasks := []string{"fetch", "build"}
	var spec v1.PipelineSpec
	for _, task := range tasks {
		spec.Tasks = append(spec.Tasks, v1.PipelineTask{Name: task, TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: childSteps}}})
	}
	pr, err := s.tekton.TektonV1().PipelineRuns(ns).Create(ctx, &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: ns},
		Spec:       v1.PipelineRunSpec{PipelineSpec: &spec},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var trs []*v1.TaskRun
	for i, task := range tasks {
		tr, err := s.tekton.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, task, &v1.TaskSpec{Steps: childSteps}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr, err = kubetest.FinishTaskRun(ctx, s.tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", 100+i)}); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	if pr, err = kubetest.FinishPipelineRun(ctx, s.tekton, pr, kubetest.PipelineFinishOptions{TaskRuns: trs}); err != nil {
		t.Fatal(err)
	}
	return pr
}

// waitPipelineRunSigned waits for pr's signed=true and checks the store
// holds its children's links and provenances and its own provenance, once.
func (s *setup) waitPipelineRunSigned(ctx context.Context, t *testing.T, pr *v1.PipelineRun) {
	t.Helper()
	kubetest.WaitPipelineRunSigned(ctx, t, s.tekton, pr.Namespace, pr.Name)
	ds, err := dirstore.Open(s.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ds.List(ctx, store.Filter{RunID: string(pr.UID)})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	// Two children: a link per step each, a provenance each, and the
	// PipelineRun's own provenance.
	if kinds[store.KindLink] != 2*len(childSteps) || kinds[store.KindProvenance] != 3 || len(entries) != 2*len(childSteps)+3 {
		t.Errorf("PipelineRun %s: stored %v, want %d links and 3 provenances", pr.Name, kinds, 2*len(childSteps))
	}
}
