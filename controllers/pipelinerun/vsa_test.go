package pipelinerun

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trustroot"
)

// TestSummarizeWithoutTrustedLayout: the VSA step signs nothing, and says
// why in an Event, when it is off (silently), the run published no image,
// there is no verified trust root, TUF releases no layout for the
// pipeline, or the verifier key is the key that signs the namespace's runs.
// The run stays signed in every case (no error).
func TestSummarizeWithoutTrustedLayout(t *testing.T) {
	ctx := context.Background()
	signingSecret, _ := controllertest.SigningSecret(t, "signing-secrets", "pw")
	vsaSecret, _ := controllertest.SigningSecret(t, "vsa-key", "pw2")
	url, root := serveTUF(t, signingtest.Signer(t), map[string][]byte{"layouts/release.layout": []byte(`{"signed":{}}`)})
	c, err := trust.NewClient(ctx, trust.ClientOptions{Source: url, CacheDir: t.TempDir(), BootstrapRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	withRoot := func() *trustroot.Root { return trustroot.New(c) }
	image := "registry.example.com/team/app@sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		name     string
		disabled bool
		images   []string
		trust    func() *trustroot.Root
		pipeline string
		secret   string
		want     string
	}{
		{name: "off", disabled: true, images: []string{image}, trust: withRoot, pipeline: "release"},
		{name: "no image", trust: withRoot, pipeline: "release", want: "Normal VSASkipped no VSA: the run published no image"},
		{name: "no trust root", images: []string{image}, pipeline: "release", want: "Warning VSASkipped no VSA: no verified TUF trust root"},
		{name: "no layout released", images: []string{image}, trust: withRoot, pipeline: "adhoc", want: "Warning VSASkipped no VSA: no trusted layout for pipeline adhoc"},
		{name: "verifier key is the signing key", images: []string{image}, trust: withRoot, pipeline: "release", secret: "signing-secrets",
			want: "is the key that signs namespace team's runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := record.NewFakeRecorder(10)
			k := &Kind{Signing: &lifecycle.Signing{Secrets: controllertest.SecretLister(t, signingSecret, vsaSecret),
				SystemNamespace: controllertest.SystemNamespace, Shared: lifecycle.NewShared()}, Recorder: rec, Trust: tc.trust}
			cfg := settings.Defaults()
			cfg.VSA = settings.VSA{Enabled: !tc.disabled, VerifierID: "https://stepseal.dev/controller/test", Secret: "vsa-key"}
			if tc.secret != "" {
				cfg.VSA.Secret = tc.secret
			}
			pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "team", UID: "uid"}}
			if err := k.summarize(ctx, summaryInput{pr: pr, pipeline: tc.pipeline, runID: "uid", images: tc.images}, cfg); err != nil {
				t.Fatal(err)
			}
			var got string
			select {
			case got = <-rec.Events:
			default:
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("Event %q, want %q", got, tc.want)
			}
		})
	}
}
