package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func review(t testing.TB, op admissionv1.Operation, sub string, p, old *corev1.Pod, dryRun bool) []byte {
	t.Helper()
	req := &admissionv1.AdmissionRequest{
		UID: types.UID("uid-1"), Kind: podKind, Resource: podResource, SubResource: sub, Operation: op,
		Namespace: "team", DryRun: &dryRun,
	}
	if p != nil {
		raw, _ := json.Marshal(p)
		req.Object = runtime.RawExtension{Raw: raw}
	}
	if old != nil {
		raw, _ := json.Marshal(old)
		req.OldObject = runtime.RawExtension{Raw: raw}
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil {
		t.Fatal("no response")
	}
	return out.Response
}

// TestHandler covers the AdmissionReview cases over HTTP against the real
// registry: W2 (tag mutated to the digest), W17 (pods/ephemeralcontainers),
// W18 (UPDATE), W27 (warnings), W30 (dryRun), W31 (malformed, wrong kind).
func TestHandler(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")
	d := e.decider(nil)
	val, mut := ValidatingHandler(d), MutatingHandler(d)

	t.Run("create allowed, uid echoed", func(t *testing.T) {
		r := post(t, val, review(t, admissionv1.Create, "", pod(signed.String()), nil, false))
		if !r.Allowed || r.UID != "uid-1" {
			t.Fatalf("%+v", r)
		}
	})
	for _, dry := range []bool{false, true} {
		r := post(t, val, review(t, admissionv1.Create, "", pod(unsigned.String()), nil, dry))
		if r.Allowed || r.Result == nil || r.Result.Code != http.StatusForbidden || !strings.Contains(r.Result.Message, "container c0: image "+unsigned.String()+` (rule "apps"): no signature found`) {
			t.Errorf("W1/W30 dryRun=%v: %+v", dry, r.Result)
		}
	}
	t.Run("W17 ephemeralcontainers", func(t *testing.T) {
		old := pod(signed.String())
		p := pod(signed.String())
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: unsigned.String()}}}
		r := post(t, val, review(t, admissionv1.Update, "ephemeralcontainers", p, old, false))
		if r.Allowed || !strings.Contains(r.Result.Message, "ephemeral container debugger") {
			t.Errorf("%+v", r.Result)
		}
	})
	t.Run("W18 update", func(t *testing.T) {
		old := pod(signed.String(), signed.String())
		if r := post(t, val, review(t, admissionv1.Update, "", pod(signed.String(), e.nop.String()), old, false)); !r.Allowed {
			t.Errorf("sidecar stop: %+v", r.Result)
		}
		if r := post(t, val, review(t, admissionv1.Update, "", pod(signed.String(), unsigned.String()), old, false)); r.Allowed {
			t.Error("swap to an unsigned image allowed")
		}
	})
	t.Run("W27 warnings", func(t *testing.T) {
		w := e.push("warned/x")
		r := post(t, val, review(t, admissionv1.Create, "", pod(w.String()), nil, false))
		if !r.Allowed || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "warn mode") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("W2 tags mutated to digests, Pods only", func(t *testing.T) {
		p := pod(e.host+"/apps/signed:v1", e.host+"/apps/signed:v1", "169.254.169.254/x:latest")
		p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: e.host + "/apps/unsigned:v1"}}}}
		r := post(t, mut, review(t, admissionv1.Create, "", p, nil, false))
		if !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("%+v", r)
		}
		var ops []jsonpatch.Operation
		if err := json.Unmarshal(r.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"/spec/containers/0/image":        signed.String(),
			"/spec/containers/1/image":        signed.String(),
			"/spec/volumes/0/image/reference": unsigned.String(),
		}
		if len(ops) != len(want) {
			t.Fatalf("ops %+v", ops)
		}
		for _, op := range ops {
			if op.Operation != "replace" || want[op.Path] != op.Value {
				t.Errorf("op %+v", op)
			}
		}
		// The mutated Pod, validated: the digest is what is checked (W3).
		if r := post(t, val, review(t, admissionv1.Create, "", pod(signed.String()), nil, false)); !r.Allowed {
			t.Error(r.Result)
		}
		if r := post(t, mut, review(t, admissionv1.Update, "ephemeralcontainers", p, p, false)); r.Allowed {
			t.Error("the mutating handler accepted a subresource")
		}
	})
	t.Run("W31 malformed and unexpected", func(t *testing.T) {
		other := review(t, admissionv1.Create, "", pod(signed.String()), nil, false)
		other = bytes.Replace(other, []byte(`"kind":"Pod"`), []byte(`"kind":"Deployment"`), 1)
		for name, body := range map[string][]byte{
			"garbage":            []byte("{not json"),
			"no request":         []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
			"no object":          review(t, admissionv1.Create, "", nil, nil, false),
			"bad object":         bytes.Replace(review(t, admissionv1.Create, "", pod(signed.String()), nil, false), []byte(`"containers":[`), []byte(`"containers":7,"x":[`), 1),
			"other kind":         other,
			"update without old": review(t, admissionv1.Update, "", pod(signed.String()), nil, false),
		} {
			for _, h := range []http.Handler{val, mut} {
				r := post(t, h, body)
				if r.Allowed || !strings.Contains(r.Result.Message, "malformed admission review") {
					t.Errorf("%s: %+v", name, r.Result)
				}
			}
		}
		if r := post(t, val, review(t, admissionv1.Delete, "", nil, pod(unsigned.String()), false)); !r.Allowed {
			t.Error("DELETE denied")
		}
	})
}

func FuzzAdmissionReview(f *testing.F) {
	p := pod("127.0.0.1:1/apps/x@sha256:"+strings.Repeat("a", 64), "127.0.0.1:1/nowhere/x:v1")
	p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "x@sha1:00"}}}}
	f.Add(review(f, admissionv1.Create, "", p, nil, false))
	f.Add(review(f, admissionv1.Update, "ephemeralcontainers", p, pod(), true))
	f.Add([]byte(`{"request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"containers":[{"image":"UPPER@sha256:"}]}}}}`))
	pol, err := ParsePolicy([]byte(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- {name: pinned, images: ["**"], require: digest, digests: ["sha256:` + strings.Repeat("a", 64) + `"]}
`))
	if err != nil {
		f.Fatal(err)
	}
	d, err := NewDecider(Config{Policy: pol})
	if err != nil {
		f.Fatal(err)
	}
	val := &Handler{d: d}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Pinned digests only: no registry is contacted, whatever the input.
		out := val.Review(context.Background(), body)
		if out.Response == nil {
			t.Fatal("no response")
		}
		if out.Response.Allowed {
			var in admissionv1.AdmissionReview
			if json.Unmarshal(body, &in) != nil || in.Request == nil {
				t.Fatal("a malformed review was allowed")
			}
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- {name: a, images: [\"**\"], require: digest, digests: [\"sha256:" + strings.Repeat("0", 64) + "\"]}\n"))
	f.Add([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- {name: a, images: [\"r/**/x\"], require: vsa, vsa: {verifier: v, maxAge: 1h}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		for _, r := range p.Rules {
			if r.Mode != ModeEnforce && r.Mode != ModeWarn || len(r.Images) == 0 {
				t.Fatalf("accepted rule %+v", r)
			}
			_, _ = p.Match("127.0.0.1:5000/r/a/x")
		}
	})
}
