package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRealNodeAdmittedPodsRun: what the webhook admits actually runs on the
// real kubelet, for each requirement — signed (published by stepseal's
// publish workflow), vsa (a PASSED VSA by the verifier attached), digest
// (the node's busybox, pinned) — and the kubelet ran exactly the admitted
// digest (status imageID). What it refuses never exists: an unsigned image
// (W1), a digest the rule does not pin, an image without a VSA. A Pod given
// by tag is stored with the digest the tag named when the mutating webhook
// resolved it (W2); the tag is then moved to another signed image before
// the Pod is scheduled (a scheduling gate holds it), and the kubelet still
// runs the admitted digest (W3).
func TestRealNodeAdmittedPodsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e := newEnv(ctx, t)
	e.webhook(ctx)

	s := token(t, "signed")
	signed := e.publish(ctx, e.image(s), "apps/app", "v1")
	if signed.Encrypted {
		t.Fatalf("%s encrypted", signed.Digest)
	}
	e.mustRun(ctx, "signed", signed.Digest.String(), corev1.PullIfNotPresent, s, signed.Digest)

	v := token(t, "vsa")
	built := e.push(ctx, e.image(v), "builds/app", "v1")
	e.attestVSA(ctx, built)
	e.mustRun(ctx, "vsa", built.String(), corev1.PullIfNotPresent, v, built)

	busybox, err := name.NewDigest(e.n.Image(t, "BUSYBOX"))
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun(ctx, "digest", busybox.String(), corev1.PullIfNotPresent, "no-secret", busybox)

	unsigned := e.push(ctx, e.image(token(t, "unsigned")), "apps/unsigned", "v1")
	e.mustDeny(ctx, "unsigned", unsigned.String(), corev1.PullIfNotPresent,
		"container app: image "+unsigned.String()+` (rule "apps"): no signature found`)
	other := busybox.Context().Digest(signed.Digest.DigestStr())
	e.mustDeny(ctx, "other-digest", other.String(), corev1.PullIfNotPresent,
		"container app: image "+other.String()+` (rule "tekton-shell"): digest not allowed by the rule`)
	noVSA := e.push(ctx, e.image(token(t, "novsa")), "builds/novsa", "v1")
	e.mustDeny(ctx, "no-vsa", noVSA.String(), corev1.PullIfNotPresent,
		"container app: image "+noVSA.String()+` (rule "builds"): `)

	// W2, W3: a tag, resolved at admission; the tag moves before the Pod
	// is scheduled.
	s1 := token(t, "tag-first")
	first := e.publish(ctx, e.image(s1), "apps/tagged", "v1")
	tagged := e.ref("apps/tagged", "v1").String()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "by-tag", Namespace: e.ns}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: ptr(int64(1)),
		SchedulingGates: []corev1.PodSchedulingGate{{Name: "stepseal.dev/test-hold"}},
		Containers:      []corev1.Container{{Name: "app", Image: tagged, Command: []string{"cat", "/secret.txt"}}},
	}}
	p, err = e.n.Kube.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("W2: Pod by tag refused: %v", err)
	}
	if got := p.Spec.Containers[0].Image; got != first.Digest.String() {
		t.Fatalf("W2: stored image %s, want %s", got, first.Digest)
	}
	second := e.publish(ctx, e.image(token(t, "tag-second")), "apps/tagged", "v1")
	if second.Digest.DigestStr() == first.Digest.DigestStr() {
		t.Fatal("the tag did not move")
	}
	p.Spec.SchedulingGates = nil
	if _, err := e.n.Kube.CoreV1().Pods(e.ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("removing the scheduling gate: %v", err)
	}
	p = e.n.WaitPod(ctx, t, e.ns, "by-tag", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || pullFailed(p) != ""
	})
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("W3: Pod by tag: phase %s %s", p.Status.Phase, pullFailed(p))
	}
	if got := p.Status.ContainerStatuses[0].ImageID; got != first.Digest.String() {
		t.Errorf("W3: the kubelet ran %s, want the admitted %s (the tag now names %s)", got, first.Digest, second.Digest)
	}
	logs, err := e.n.Logs(ctx, e.ns, "by-tag", "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(logs)); got != s1 {
		t.Errorf("W3: the Pod printed %q, want the admitted image's %q", got, s1)
	}
}
