package taskrun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"go.uber.org/zap/zaptest"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// createStepAction creates the catalog's StepAction file in ns, its image
// placeholder replaced by image.
func createStepAction(ctx context.Context, t *testing.T, n *realnode.Node, ns, file, image string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("ko://github.com/stepseal/stepseal/images/stepseal"), []byte(image))
	var sa v1beta1.StepAction
	if err := yaml.UnmarshalStrict(b, &sa); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	sa.Namespace = ns
	if _, err := n.Tekton.TektonV1beta1().StepActions(ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRealNodeRecordedStep runs the catalog's sample Task on a real node:
// stepseal-record-start, the user's unchanged step (busybox writing a file
// into the workspace), stepseal-record-stop, in one real Pod made by
// Tekton. The stepseal TaskRun controller then signs the user step's link
// with the materials and products measured in the Pod, which it took from
// the recorders' logs by the digests in the TaskRun status. No signing key
// is ever in the Pod: no Secret volume or env, and the TaskRun's
// ServiceAccount cannot get the signing Secret (SubjectAccessReview).
func TestRealNodeRecordedStep(t *testing.T) {
	n := realnode.Get(t)
	ns, sysNS := n.Namespace(t), n.Namespace(t)
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	busybox := n.Image(t, "BUSYBOX")
	registry, _, _ := strings.Cut(busybox, "/")
	image := realnode.StepsealImage(ctx, t, registry)
	_, digest, _ := strings.Cut(image, "@")
	t.Logf("stepseal image %s", image)

	dir := t.TempDir()
	pub := controllertest.Install(ctx, t, n.Kube, sysNS, map[string]string{
		settings.KeyStoreDir: dir, settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s",
		settings.KeyRecordImages: image, settings.KeyMaxRetries: "3",
	})
	cfg, err := n.Config()
	if err != nil {
		t.Fatal(err)
	}
	// Only this test's namespace: other packages' real-node tests run their
	// own controllers on the same node at the same time. (Theirs see these
	// TaskRuns too; without record.images they cannot check the
	// measurements and retry, while this controller signs.)
	controllertest.RunControllers(injection.WithNamespaceScope(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), ns), t, cfg, sysNS, nil,
		NewControllerWithLogs(controllertest.NewShared(t), n))

	root := filepath.Join("..", "..", "stepaction")
	createStepAction(ctx, t, n, ns, filepath.Join(root, "stepseal-record-start", "0.1", "stepseal-record-start.yaml"), image)
	createStepAction(ctx, t, n, ns, filepath.Join(root, "stepseal-record-stop", "0.1", "stepseal-record-stop.yaml"), image)
	sample, err := os.ReadFile(filepath.Join(root, "stepseal-record-start", "0.1", "samples", "recorded-build.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sample = bytes.ReplaceAll(sample, []byte("docker.io/library/busybox:1.36"), []byte(busybox))
	var task v1.Task
	if err := yaml.UnmarshalStrict(sample, &task); err != nil {
		t.Fatal(err)
	}
	task.Namespace = ns
	// A step before the pair puts a source file into the workspace: it is a
	// material of the measured step (and has a link of its own).
	task.Spec.Steps = append([]v1.Step{{Name: "checkout", Image: busybox,
		Script: "echo 'int main;' > $(workspaces.source.path)/main.c"}}, task.Spec.Steps...)
	if _, err := n.Tekton.TektonV1().Tasks(ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "recorded-build-1", Namespace: ns},
		Spec: v1.TaskRunSpec{
			TaskRef:    &v1.TaskRef{Name: task.Name},
			Workspaces: []v1.WorkspaceBinding{{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
	start := time.Now()
	if tr, err = n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitTaskRun(ctx, t, n.Tekton, ns, tr.Name)
	t.Logf("TaskRun done in %.1fs", time.Since(start).Seconds())
	if !done.IsSuccessful() {
		t.Fatalf("TaskRun failed: %+v; steps %+v", done.Status.Conditions, done.Status.Steps)
	}
	for _, s := range done.Status.Steps {
		if s.Name != "build" && s.Name != "checkout" && !strings.HasSuffix(s.ImageID, "@"+digest) {
			t.Errorf("recorder step %s ran %q, want the stepseal image %s", s.Name, s.ImageID, digest)
		}
	}
	signed := kubetest.WaitTaskRunSigned(ctx, t, n.Tekton, ns, tr.Name)
	if signed.Annotations[annotations.Signed] != annotations.SignedTrue {
		t.Fatalf("TaskRun not signed: %v", signed.Annotations)
	}
	t.Logf("signed %.1fs after it was created", time.Since(start).Seconds())

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// One link per user step (the recorders get none), and the provenance:
	// the last step has products.
	controllertest.VerifyStored(t, ds, pub, string(done.UID), []string{tr.Name + ".checkout", tr.Name + ".build"}, 1)
	links, err := ds.List(ctx, store.Filter{Kind: store.KindLink, RunID: string(done.UID)})
	if err != nil {
		t.Fatal(err)
	}
	var l in_toto.Link
	for _, e := range links {
		var mb in_toto.Metablock
		if err := json.Unmarshal(e.Data, &mb); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(mb.Signed)
		var one in_toto.Link
		if err := json.Unmarshal(b, &one); err != nil {
			t.Fatal(err)
		}
		if one.Name == tr.Name+".build" {
			l = one
		}
	}
	want := sha256.Sum256([]byte("built\n"))
	if got := l.Products["source/out/app.txt"]["sha256"]; got != hex.EncodeToString(want[:]) {
		t.Errorf("link %s: product source/out/app.txt = %q, want the in-pod sha256 %x (products %v)", l.Name, got, want, l.Products)
	}
	if _, ok := l.Materials["source/out/app.txt"]; ok {
		t.Errorf("link %s: source/out/app.txt among the materials: it did not exist before the step", l.Name)
	}
	src := sha256.Sum256([]byte("int main;\n"))
	for what, as := range map[string]map[string]in_toto.HashObj{"material": l.Materials, "product": l.Products} {
		if got := as["source/main.c"]["sha256"]; got != hex.EncodeToString(src[:]) {
			t.Errorf("link %s: %s source/main.c = %q, want %x", l.Name, what, got, src)
		}
	}
	t.Logf("link %s: materials %v, products %v", l.Name, l.Materials, l.Products)

	// The key never reaches the Pod.
	pod, err := n.Kube.CoreV1().Pods(ns).Get(ctx, done.Status.PodName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("Pod %s mounts Secret %s", pod.Name, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					t.Errorf("Pod %s projects Secret %s", pod.Name, src.Secret.Name)
				}
			}
		}
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				t.Errorf("container %s: env from Secret %s", c.Name, e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("container %s: env %s from Secret %s", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	for _, verb := range []string{"get", "list", "watch"} {
		r, err := n.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + ns + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: sysNS, Verb: verb, Resource: "secrets", Name: "signing-secrets",
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed {
			t.Errorf("the TaskRun's ServiceAccount %s may %s the signing Secret", sa, verb)
		}
	}

	// Attacks, in the same namespace with the same controller: each TaskRun
	// runs in a real Pod and is refused, with the reason naming the step.
	for _, a := range []struct {
		name, want, step string
		steps            []v1.Step
	}{
		{
			// A step of the user's own image claims to be the stop: it
			// declares the result and prints a document of its own making.
			name: "forged-stop", want: "not a trusted stepseal recorder image", step: "measure-products",
			steps: []v1.Step{
				task.Spec.Steps[1], // measure-materials (the real start)
				{Name: "build", Image: busybox, Script: "echo built > $(workspaces.source.path)/app.txt"},
				{Name: "measure-products", Image: busybox, Results: []v1.StepResult{{Name: "STEPSEAL_PRODUCTS"}},
					Script: `doc='{"_type":"https://stepseal.dev/measurement/v1","kind":"products","step":"build","taskRun":"$(context.taskRun.name)","taskRunUID":"$(context.taskRun.uid)","artifacts":{},"exitCode":0,"time":"2026-01-01T00:00:00Z"}'
echo "$doc"
printf %s "$doc" | sha256sum | cut -d' ' -f1 | tr -d '\n' > $(step.results.STEPSEAL_PRODUCTS.path)`},
			},
		},
		{
			// The user step releases the stop early: it writes its own
			// exit code and Tekton's done file (its entrypoint's
			// -post_file, in its own writable /tekton/run dir), so stop
			// starts and measures while the step sleeps, then rewrites its
			// product. The step's container exits seconds after stop began
			// hashing, and the link is refused rather than signed with a
			// product the workspace no longer holds.
			name: "early-release", want: "not before the stop measurement", step: "build",
			steps: []v1.Step{
				task.Spec.Steps[1],
				{Name: "build", Image: busybox, Script: `echo built > $(workspaces.source.path)/app.txt
echo 0 > $(steps.step-build.exitCode.path)
post=$(tr '\000' '\n' < /proc/1/cmdline | grep -A1 -e -post_file | tail -n1)
echo "releasing the next step early: $post"
touch "$post"
sleep 4
echo tampered > $(workspaces.source.path)/app.txt`},
				task.Spec.Steps[3],
			},
		},
		{
			// The user step fails without onError: continue; Tekton skips
			// the stop, and the TaskRun is not signed without products.
			name: "failed-no-stop", want: "without a stop", step: "build",
			steps: []v1.Step{task.Spec.Steps[1], {Name: "build", Image: busybox, Script: "exit 3"}, task.Spec.Steps[3]},
		},
	} {
		atr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: ns},
			Spec: v1.TaskRunSpec{
				TaskSpec:   &v1.TaskSpec{Workspaces: task.Spec.Workspaces, Steps: a.steps},
				Workspaces: []v1.WorkspaceBinding{{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		}
		if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, atr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		realnode.WaitTaskRun(ctx, t, n.Tekton, ns, a.name)
		for {
			got, err := n.Tekton.TektonV1().TaskRuns(ns).Get(ctx, a.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Annotations[annotations.Signed]; s != "" {
				msg := got.Annotations[annotations.Error]
				if s != annotations.SignedFailed || !strings.Contains(msg, a.want) || !strings.Contains(msg, a.step) {
					t.Errorf("%s: signed=%s error %q, want failed with %q naming step %s", a.name, s, msg, a.want, a.step)
				}
				t.Logf("%s: refused: %s", a.name, msg)
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: not decided: %v", a.name, got.Annotations)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if es, err := ds.List(ctx, store.Filter{RunID: mustUID(ctx, t, n, ns, a.name)}); err != nil || len(es) != 0 {
			t.Errorf("%s: %d entries stored for a refused TaskRun (%v)", a.name, len(es), err)
		}
	}
}

func mustUID(ctx context.Context, t *testing.T, n *realnode.Node, ns, name string) string {
	t.Helper()
	tr, err := n.Tekton.TektonV1().TaskRuns(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(tr.UID)
}
