package realnode

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepseal/stepseal/internal/realnode"
)

// TestRealNodeAdmissionWalkthrough runs examples/admission-walkthrough on
// the real node, so the walk-through cannot rot: the CLI built from this
// checkout; the node's scratch registry; the node's busybox as the base
// image; and the node's key directory, where the script installs the
// platform's key. The script checks each step itself and exits non-zero
// when a step fails or a refusal does not say what the walk-through
// promises. The test checks the transcript for each refusal and reads the
// admitted Pod's output from the kubelet's log.
func TestRealNodeAdmissionWalkthrough(t *testing.T) {
	n := realnode.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := t.TempDir()
	for _, cmd := range []string{"stepseal", "stepseal-tekton"} {
		b := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, cmd), "github.com/stepseal/stepseal/images/"+cmd)
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	ns := n.Namespace(t)
	work := filepath.Join(n.Dir, "walkthrough-"+ns) // kept with the node's logs
	script := exec.CommandContext(ctx, "bash", filepath.Join("..", "..", "examples", "admission-walkthrough", "walkthrough.sh"))
	script.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+n.Kubeconfig,
		"REGISTRY="+n.ScratchRegistry(t),
		"BASE="+n.Image(t, "BUSYBOX"),
		"NODE_KEYS="+filepath.Join(n.Dir, "keys"),
		"NAMESPACE="+ns,
		"WORK="+work,
	)
	start := time.Now()
	out, err := script.CombinedOutput()
	transcript := filepath.Join(work, "transcript.log")
	_ = os.WriteFile(transcript, out, 0o644)
	if err != nil {
		t.Fatalf("walkthrough.sh: %v (transcript %s)\n%s", err, transcript, out)
	}
	t.Logf("walk-through done in %.1fs (transcript %s)", time.Since(start).Seconds(), transcript)
	for _, want := range []string{
		"VERIFICATION PASSED",
		`step "test.unit": material "source/main.go" not allowed`,
		"recipients are exactly the platforms policy \"platforms\" names",
		"ALLOWED " + n.ScratchRegistry(t) + "/" + ns + "/apps/hello@sha256:",
		"pod/hello condition met",
		`admission webhook "verify.stepseal.dev" denied the request: stepseal: container unsigned: image `,
		"no signature found",
		"container mallory: image ",
		"container partner: image ",
		`platform "node" is not a recipient under platform policy "platforms"`,
		"container after-revocation: image ", "laptop stolen",
		"pod/hello-v2 condition met",
		"container after-resign: image ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the transcript lacks %q", want)
		}
	}
	logs, err := n.Logs(ctx, ns, "hello", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(logs)); got != "hello, world 1.0.0" {
		t.Errorf("the admitted Pod printed %q", got)
	}
	if logs, err = n.Logs(ctx, ns, "hello-v2", "hello-v2"); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(logs)); got != "hello, world 1.0.0" {
		t.Errorf("bob's v2 printed %q", got)
	}
	if t.Failed() {
		t.Logf("transcript:\n%s", out)
	}
}
