package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/stepseal/stepseal/internal/realnode"
)

// TestRealNodeTaskRunUnsignedStep (W33): in a namespace opted in to the
// webhook, the real Tekton controller creates a TaskRun's Pod; the webhook
// refuses it because the step's image is unsigned, and Tekton fails the
// TaskRun for good (reason PodCreationFailed) with stepseal's message,
// naming the container, image and rule, in its condition. No Pod exists.
// Tekton's injected images (the entrypoint init container, the shell image
// of place-scripts) pass by their digest rules, so the same Task with a
// signed step image succeeds in the same namespace.
func TestRealNodeTaskRunUnsignedStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := newEnv(ctx, t)
	e.webhook(ctx)

	unsigned := e.push(ctx, e.image(token(t, "unsigned")), "apps/step", "unsigned")
	s := token(t, "signed")
	signed := e.publish(ctx, e.image(s), "apps/step", "signed")

	run := func(name, image string) *v1.TaskRun {
		tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: v1.TaskRunSpec{
			TaskSpec: &v1.TaskSpec{
				Results: []v1.TaskResult{{Name: "secret"}},
				Steps: []v1.Step{{Name: "build", Image: image,
					Script: "#!/bin/sh\ncat /secret.txt | tee $(results.secret.path)\n"}},
			},
		}}
		if _, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return realnode.WaitTaskRun(ctx, t, e.n.Tekton, e.ns, name)
	}

	start := time.Now()
	tr := run("unsigned", unsigned.String())
	t.Logf("TaskRun with an unsigned step failed in %.1fs", time.Since(start).Seconds())
	c := tr.Status.GetCondition(apis.ConditionSucceeded)
	if c == nil || c.Status != "False" {
		t.Fatalf("TaskRun with an unsigned step: condition %+v", c)
	}
	t.Logf("condition: reason %s, message %q", c.Reason, c.Message)
	if c.Reason != "PodCreationFailed" {
		t.Errorf("reason %q, want PodCreationFailed", c.Reason)
	}
	for _, want := range []string{
		`admission webhook "verify.stepseal.dev" denied the request: stepseal: `,
		"container step-build: image " + unsigned.String() + ` (rule "apps"): no signature found`,
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message lacks %q", want)
		}
	}
	if tr.Status.PodName != "" {
		if _, err := e.n.Kube.CoreV1().Pods(e.ns).Get(ctx, tr.Status.PodName, metav1.GetOptions{}); err == nil {
			t.Errorf("Pod %s exists", tr.Status.PodName)
		}
	}

	tr = run("signed", signed.Digest.String())
	if !tr.IsSuccessful() {
		t.Fatalf("TaskRun with a signed step: %+v", tr.Status.GetCondition(apis.ConditionSucceeded))
	}
	if len(tr.Status.Steps) != 1 || tr.Status.Steps[0].ImageID != signed.Digest.String() {
		t.Errorf("steps %+v, want one with imageID %s", tr.Status.Steps, signed.Digest)
	}
	if len(tr.Status.Results) != 1 || strings.TrimSpace(tr.Status.Results[0].Value.StringVal) != s {
		t.Errorf("results %+v, want secret=%s", tr.Status.Results, s)
	}
}
