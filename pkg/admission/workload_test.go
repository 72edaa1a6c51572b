package admission

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/kubetest"
)

// warnings collects the Warning headers a client is sent, as kubectl
// prints them.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the stepseal warnings since the last take.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if strings.HasPrefix(m, "stepseal") {
			out = append(out, m)
		}
	}
	w.msgs = nil
	return out
}

// TestAPIServerWorkloadWarnings: the shipped workloads.stepseal.dev
// webhook, called by the real kube-apiserver, never denies a workload but
// warns (Warning headers, what kubectl prints) about every Pod-template
// image the Pod webhooks would deny, for each of the six kinds; a covered
// tag is resolved and its digest decided; an uncovered image is warned
// about without its registry being contacted; warn-mode rules say so; an
// UPDATE that leaves the template alone is not sent (matchConditions),
// one that changes an image is. With the webhook unreachable
// (failurePolicy Ignore), workloads are created without warnings.
func TestAPIServerWorkloadWarnings(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")
	warned := e.push("warned/app")
	d := e.decider(nil)
	var calls sync.Map // path -> *int
	count := func(path string) int {
		v, _ := calls.Load(path)
		if v == nil {
			return 0
		}
		return *v.(*int)
	}
	var mu sync.Mutex
	mux := Mux(d, nil)
	url, caPEM := serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		v, _ := calls.LoadOrStore(r.URL.Path, new(int))
		*v.(*int)++
		mu.Unlock()
		mux.ServeHTTP(w, r)
	}))

	c := kubetest.Start(t)
	admin, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	var got warnings
	cfg := c.Config()
	cfg.WarningHandler = &got
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := c.Namespace(t)
	label := "stepseal.dev/admission-" + ns[len(ns)-8:]
	optIn(ctx, t, admin, ns, label)
	_, val := shippedWebhooks(t)
	var wh *admregv1.ValidatingWebhook
	for i := range val.Webhooks {
		if val.Webhooks[i].Name == "workloads.stepseal.dev" {
			wh = &val.Webhooks[i]
		}
	}
	if wh == nil {
		t.Fatal("no workloads.stepseal.dev webhook shipped")
	}
	if *wh.FailurePolicy != admregv1.Ignore {
		t.Errorf("workloads.stepseal.dev failurePolicy %s, want Ignore", *wh.FailurePolicy)
	}
	cfgName := "stepseal-workloads-" + ns[len(ns)-8:]
	wh.ClientConfig = admregv1.WebhookClientConfig{URL: ptr(url + PathWorkloads), CABundle: caPEM}
	wh.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{label: "enforce"}}
	vwc := &admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.ValidatingWebhook{*wh}}
	if _, err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})

	labels := map[string]string{"app": "web"}
	tmpl := func(img string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: img}}}}
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	deploy := func(nm, img string) error {
		tp := tmpl(img)
		tp.Spec.RestartPolicy = corev1.RestartPolicyAlways
		_, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: nm},
			Spec: appsv1.DeploymentSpec{Selector: sel, Template: tp}}, metav1.CreateOptions{})
		return err
	}
	// The apiserver picks the configuration up asynchronously.
	for i := 0; ; i++ {
		if err := deploy("probe-"+string(rune('a'+i%26))+string(rune('a'+i/26)), unsigned.String()); err != nil {
			t.Fatal(err)
		}
		if len(got.take()) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("the workloads webhook is not called")
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantUnsigned := "container app: image " + unsigned.String() + ` (rule "apps"): no signature found`

	t.Run("each kind", func(t *testing.T) {
		always := func(img string) corev1.PodTemplateSpec {
			tp := tmpl(img)
			tp.Spec.RestartPolicy = corev1.RestartPolicyAlways
			return tp
		}
		for kind, create := range map[string]func(img string) error{
			"Deployment": func(img string) error { return deploy("unsigned", img) },
			"ReplicaSet": func(img string) error {
				_, err := client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"},
					Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: always(img)}}, metav1.CreateOptions{})
				return err
			},
			"StatefulSet": func(img string) error {
				_, err := client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"},
					Spec: appsv1.StatefulSetSpec{Selector: sel, ServiceName: "web", Template: always(img)}}, metav1.CreateOptions{})
				return err
			},
			"DaemonSet": func(img string) error {
				_, err := client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"},
					Spec: appsv1.DaemonSetSpec{Selector: sel, Template: always(img)}}, metav1.CreateOptions{})
				return err
			},
			"Job": func(img string) error {
				_, err := client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"},
					Spec: batchv1.JobSpec{Template: tmpl(img)}}, metav1.CreateOptions{})
				return err
			},
			"CronJob": func(img string) error {
				_, err := client.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"},
					Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl(img)}}}}, metav1.CreateOptions{})
				return err
			},
		} {
			if err := create(unsigned.String()); err != nil {
				t.Errorf("%s: denied (the workloads webhook never denies): %v", kind, err)
				continue
			}
			w := got.take()
			want := "stepseal: the Pods of " + kind + " unsigned would be denied: " + wantUnsigned
			if len(w) != 1 || !strings.HasPrefix(w[0], want) {
				t.Errorf("%s: warnings %q, want one starting %q", kind, w, want)
			}
		}
	})

	t.Run("signed by digest and by tag: no warning", func(t *testing.T) {
		for nm, img := range map[string]string{"signed": signed.String(), "signed-tag": e.host + "/apps/signed:v1"} {
			if err := deploy(nm, img); err != nil {
				t.Fatal(err)
			}
			if w := got.take(); len(w) != 0 {
				t.Errorf("%s: warnings %q", img, w)
			}
		}
	})
	t.Run("unsigned by tag: its digest is decided", func(t *testing.T) {
		if err := deploy("unsigned-tag", e.host+"/apps/unsigned:v1"); err != nil {
			t.Fatal(err)
		}
		if w := got.take(); len(w) != 1 || !strings.Contains(w[0], wantUnsigned) {
			t.Errorf("warnings %q, want %q", w, wantUnsigned)
		}
		// A covered tag the registry does not know: the mutating webhook
		// would deny the Pod; one warning, naming the tag.
		missing := e.host + "/apps/missing:v1"
		if err := deploy("missing-tag", missing); err != nil {
			t.Fatal(err)
		}
		if w := got.take(); len(w) != 1 || !strings.Contains(w[0], "container app: image "+missing+": resolving the tag to a digest: ") {
			t.Errorf("warnings %q", w)
		}
	})
	t.Run("uncovered image: no registry contact", func(t *testing.T) {
		proxy := newCountingProxy(t, e.host)
		for nm, tc := range map[string]struct{ img, want string }{
			"uncovered":     {proxy.host + "/mirror/app@sha256:" + strings.Repeat("a", 64), "matches no rule of the admission policy (its registry was not contacted)"},
			"uncovered-tag": {proxy.host + "/mirror/app:v1", "image must be referenced by digest"},
		} {
			if err := deploy(nm, tc.img); err != nil {
				t.Fatal(err)
			}
			w := got.take()
			if len(w) != 1 || !strings.Contains(w[0], "container app: image "+tc.img+": ") || !strings.Contains(w[0], tc.want) {
				t.Errorf("%s: warnings %q, want %q", tc.img, w, tc.want)
			}
		}
		if n := proxy.n.Load(); n != 0 {
			t.Errorf("%d requests at the uncovered registry", n)
		}
	})
	t.Run("warn mode", func(t *testing.T) {
		if err := deploy("warned", warned.String()); err != nil {
			t.Fatal(err)
		}
		if w := got.take(); len(w) != 1 || !strings.Contains(w[0], `(rule "warned"): no signature found`) || !strings.HasSuffix(w[0], "(warn mode: its Pods would be admitted with this warning)") {
			t.Errorf("warnings %q", w)
		}
	})
	t.Run("UPDATE", func(t *testing.T) {
		dp, err := client.AppsV1().Deployments(ns).Get(ctx, "signed", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := count(PathWorkloads)
		dp.Spec.Replicas = ptr(int32(3))
		if dp, err = client.AppsV1().Deployments(ns).Update(ctx, dp, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := count(PathWorkloads) - before; n != 0 {
			t.Errorf("replicas changed: %d calls, want 0 (the template did not change)", n)
		}
		dp.Spec.Template.Spec.Containers = append(dp.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: unsigned.String()})
		if _, err = client.AppsV1().Deployments(ns).Update(ctx, dp, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		w := got.take()
		if n := count(PathWorkloads) - before; n != 1 {
			t.Errorf("template changed: %d calls, want 1", n)
		}
		if len(w) != 1 || !strings.Contains(w[0], "container sidecar: image "+unsigned.String()) {
			t.Errorf("warnings %q (the unchanged signed container is not decided again)", w)
		}
	})
	t.Run("webhook unreachable: Ignore", func(t *testing.T) {
		v, err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, cfgName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v.Webhooks[0].ClientConfig.URL = ptr("https://" + silentListener(t) + PathWorkloads)
		timeout := int32(1)
		v.Webhooks[0].TimeoutSeconds = &timeout
		if _, err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the apiserver's configuration informer
		if err := deploy("webhook-down", unsigned.String()); err != nil {
			t.Errorf("with the webhook unreachable: %v", err)
		}
		if w := got.take(); len(w) != 0 {
			t.Errorf("warnings %q", w)
		}
	})
}

// FuzzWorkloadReview: whatever it is sent, the workloads handler answers,
// and always allows.
func FuzzWorkloadReview(f *testing.F) {
	dp := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: pod("127.0.0.1:1/apps/x@sha256:"+strings.Repeat("a", 64), "127.0.0.1:1/nowhere/x:v1").Spec}}}
	cj := &batchv1.CronJob{Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: dp.Spec.Template}}}}
	add := func(resource, group string, op admissionv1.Operation, obj, old runtime.Object) {
		req := &admissionv1.AdmissionRequest{UID: "u", Operation: op, Resource: metav1.GroupVersionResource{Group: group, Version: "v1", Resource: resource}}
		req.Object.Object, req.Object.Raw = nil, mustJSON(f, obj)
		if old != nil {
			req.OldObject.Raw = mustJSON(f, old)
		}
		f.Add(mustJSON(f, &admissionv1.AdmissionReview{Request: req}))
	}
	add("deployments", "apps", admissionv1.Create, dp, nil)
	add("cronjobs", "batch", admissionv1.Update, cj, cj)
	add("pods", "", admissionv1.Create, dp, nil)
	f.Add([]byte(`{"request":{"uid":"x","resource":{"group":"apps","version":"v1","resource":"daemonsets"},"operation":"CREATE","object":{"spec":{"template":{"spec":{"containers":[{"image":"UPPER@sha256:"}]}}}}}}`))
	pol, err := ParsePolicy([]byte(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- {name: pinned, images: ["127.0.0.1:1/**"], require: digest, digests: ["sha256:` + strings.Repeat("a", 64) + `"]}
`))
	if err != nil {
		f.Fatal(err)
	}
	// A covered tag is resolved at 127.0.0.1:1, where nothing listens;
	// others are never contacted.
	d, err := NewDecider(Config{Policy: pol, Deadline: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	h := &workloadHandler{d: d}
	f.Fuzz(func(t *testing.T, body []byte) {
		out := h.Review(context.Background(), body)
		if out.Response == nil || !out.Response.Allowed {
			t.Fatalf("not allowed: %+v", out.Response)
		}
	})
}

func mustJSON(f *testing.F, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
