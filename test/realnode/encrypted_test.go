package realnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func token(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// TestRealNodeEncryptedImage: an image stepseal's publish workflow
// encrypted to this platform ("node") is admitted by the webhook (called by
// the real kube-apiserver over TLS) and runs on the real kubelet, its layers
// decrypted by containerd's ctd-decoder with the platform's private key in
// the node's key directory. Then what admission can and cannot prove:
//
//   - imagePullPolicy IfNotPresent is refused (W34), an image encrypted
//     only to another platform is refused (W13);
//   - without the key, a fresh encrypted image is admitted (admission
//     proves authorisation, not that the node holds the key) and its pull
//     fails (ErrImagePull);
//   - the trap: an image whose layers this node already decrypted runs
//     without the key even with imagePullPolicy Always (containerd skips
//     unpacking a layer whose snapshot exists), and so does a new
//     encryption of the same content (another digest; the kubelet even
//     reports it by the first copy's digest), until their Pods and the
//     images are removed from containerd; then the pull fails too;
//   - with the key back, the fresh image runs.
func TestRealNodeEncryptedImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newEnv(ctx, t)
	e.webhook(ctx)
	removeKey := e.n.InstallKey(t, "platform-node.pem", e.nodeKeyPEM())

	s1 := token(t, "one")
	r1 := e.publish(ctx, e.image(s1), "secret/app", "v1")
	if !r1.Encrypted || !slices.Equal(r1.Platforms, []string{"node"}) {
		t.Fatalf("published %s: encrypted %v to %v, want to [node]", r1.Digest, r1.Encrypted, r1.Platforms)
	}
	img1 := r1.Digest.String()
	e.mustDeny(ctx, "if-not-present", img1, corev1.PullIfNotPresent,
		"container app: image "+img1+` (rule "secret"): encrypted image requires imagePullPolicy: Always`)

	start := time.Now()
	e.mustRun(ctx, "with-key", img1, corev1.PullAlways, s1, r1.Digest)
	t.Logf("encrypted image admitted, pulled, decrypted and run in %.1fs", time.Since(start).Seconds())

	other := e.publish(ctx, e.image(token(t, "other")), "elsewhere/app", "v1")
	e.mustDeny(ctx, "other-platform", other.Digest.String(), corev1.PullAlways,
		"container app: image "+other.Digest.String()+` (rule "secret"): encrypted image not authorised for this platform: platform "node" is not a recipient under platform policy "realnode"`)

	removeKey()
	s2 := token(t, "two")
	r2 := e.publish(ctx, e.image(s2), "secret/app", "v2")
	msg := e.mustFailPull(ctx, "no-key", r2.Digest.String())
	t.Logf("without the key: %s", msg)
	if !strings.Contains(msg, r2.Digest.String()) {
		t.Errorf("pull failure %q does not name %s", msg, r2.Digest)
	}

	// The trap: r1's layers were decrypted on this node before. The same
	// image runs; so does the same content encrypted anew (another digest,
	// other ciphertext, the same plaintext layers).
	e.mustRun(ctx, "trap", img1, corev1.PullAlways, s1, r1.Digest)
	again := e.publish(ctx, e.image(s1), "secret/app", "v1-again")
	if again.Digest.DigestStr() == r1.Digest.DigestStr() {
		t.Fatal("re-encryption gave the same digest")
	}
	e.mustRun(ctx, "trap-reencrypted", again.Digest.String(), corev1.PullAlways, s1, again.Digest, r1.Digest)
	// Both copies have one config; containerd's CRI keys images by config
	// and reports the lexicographically first repository digest of those
	// on the node: a Pod naming the other copy is reported as running the
	// first.
	named, reported := again.Digest, r1.Digest
	if named.String() < reported.String() {
		named, reported = reported, named
	}
	p := e.mustRun(ctx, "reported-as-other", named.String(), corev1.PullAlways, s1, reported)
	t.Logf("the Pod named %s; the kubelet reports imageID %s", named, p.Status.ContainerStatuses[0].ImageID)

	// Removing the Pods and then the image (and with it its decrypted
	// layers) closes it.
	for _, p := range []string{"with-key", "trap", "trap-reencrypted", "reported-as-other"} {
		if err := e.n.Kube.CoreV1().Pods(e.ns).Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer wcancel()
	if err := e.n.WaitNoContainers(wctx, img1); err != nil {
		t.Fatal(err)
	}
	t.Logf("the kubelet removed the deleted Pods' containers after %.1fs", time.Since(start).Seconds())
	if err := e.n.WaitNoContainers(wctx, again.Digest.String()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{r1.Digest.DigestStr(), again.Digest.DigestStr()} {
		if err := e.n.RemoveImage(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	msg = e.mustFailPull(ctx, "purged", img1)
	t.Logf("after the image was removed from the node: %s", msg)

	e.n.InstallKey(t, "platform-node.pem", e.nodeKeyPEM())
	e.mustRun(ctx, "key-back", r2.Digest.String(), corev1.PullAlways, s2, r2.Digest)
}
