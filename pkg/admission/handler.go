package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// MaxReviewSize caps an AdmissionReview body (the apiserver's own request
// limit is 3 MiB).
const MaxReviewSize = 3 << 20

var (
	podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	podKind     = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
)

// Handler serves AdmissionReview v1 requests for Pods.
type Handler struct {
	d *Decider
	// mutate: resolve tags to digests (JSONPatch) instead of validating.
	mutate bool
	// obs records metrics and Events (nil: none).
	obs *Observer
}

// ValidatingHandler validates Pod CREATE and UPDATE and the
// pods/ephemeralcontainers subresource; anything else it is sent is denied.
func ValidatingHandler(d *Decider) http.Handler { return &Handler{d: d} }

// MutatingHandler rewrites, for Pods only, every image given by tag that an
// admission rule covers to the digest the registry serves for it now;
// images no rule covers are left alone (and denied by validation) without
// contacting their registry.
func MutatingHandler(d *Decider) http.Handler { return &Handler{d: d, mutate: true} }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewSize+1))
	if err != nil || len(body) > MaxReviewSize {
		http.Error(w, "request body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	out := h.Review(r.Context(), body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// podReview is an AdmissionReview whose object and oldObject are decoded
// as podViews in the same pass as the request (the shallower fields win
// over AdmissionRequest's RawExtensions): one decoding of the body, of
// only the fields admission reads.
type podReview struct {
	Request *struct {
		admissionv1.AdmissionRequest
		Object    *podView `json:"object"`
		OldObject *podView `json:"oldObject"`
	} `json:"request"`
}

// Review answers one AdmissionReview body. It never panics and never
// allows what it could not decide: a malformed review is denied.
func (h *Handler) Review(ctx context.Context, body []byte) *admissionv1.AdmissionReview {
	out := &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}}
	var in podReview
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		if err == nil {
			err = errors.New("no request")
		}
		out.Response = deny(fmt.Errorf("%w: %w", ErrReview, err))
		return out
	}
	req := &in.Request.AdmissionRequest
	start := time.Now()
	var pod, old *corev1.Pod
	if v := in.Request.Object; v != nil {
		pod = v.pod()
	}
	if v := in.Request.OldObject; v != nil {
		old = v.pod()
	}
	resp := h.respond(ctx, req, pod, old)
	webhook := "validate"
	if h.mutate {
		webhook = "mutate"
	}
	h.obs.reviewed(ctx, webhook, start)
	resp.UID = req.UID
	out.Response = resp
	return out
}

func deny(err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: "stepseal: " + err.Error(),
	}}
}

func (h *Handler) respond(ctx context.Context, req *admissionv1.AdmissionRequest, pod, old *corev1.Pod) *admissionv1.AdmissionResponse {
	if req.Resource != podResource || req.Kind != podKind || (req.SubResource != "" && req.SubResource != "ephemeralcontainers") || (h.mutate && req.SubResource != "") {
		return deny(fmt.Errorf("%w: unexpected %s %s/%s (subresource %q); stepseal admits Pods", ErrReview, req.Operation, schema.GroupVersionKind(req.Kind), req.Resource.Resource, req.SubResource))
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
	default:
		// DELETE and CONNECT start no image.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	if pod == nil {
		return deny(fmt.Errorf("%w: object: empty", ErrReview))
	}
	if req.Operation == admissionv1.Update || req.SubResource == "ephemeralcontainers" {
		if old == nil {
			return deny(fmt.Errorf("%w: oldObject: empty", ErrReview))
		}
	} else {
		old = nil
	}
	if h.mutate {
		return h.resolve(ctx, pod, old)
	}
	// dryRun gets the same decision, and no Event (Observer).
	dec := h.d.Decide(ctx, pod, old)
	out := outcomeOf(dec)
	h.obs.decided(ctx, req, pod, dec, out)
	r := &admissionv1.AdmissionResponse{Allowed: true}
	if !dec.Allowed {
		r = deny(errors.New(dec.Message()))
	}
	r.Warnings, r.AuditAnnotations = dec.Warnings, out.auditAnnotations()
	return r
}

// resolve patches tags to digests. It denies nothing it can leave to
// validation, except a tag it could not resolve for a covered image.
func (h *Handler) resolve(ctx context.Context, pod, old *corev1.Pod) *admissionv1.AdmissionResponse {
	ctx, cancel := context.WithTimeout(ctx, h.d.c.Deadline)
	defer cancel()
	fields := ImageFields(&pod.Spec)
	before := map[string]string{}
	if old != nil {
		for _, f := range ImageFields(&old.Spec) {
			before[f.Field] = f.Image
		}
	}
	var ops []jsonpatch.Operation
	resolved := map[string]string{}
	for _, f := range fields {
		if img, ok := before[f.Field]; ok && img == f.Image {
			continue
		}
		ref, err := name.ParseReference(f.Image)
		if err != nil {
			continue // validation denies it with the parse error
		}
		tag, ok := ref.(name.Tag)
		if !ok {
			continue
		}
		repo := tag.Context().Name()
		if _, ok := h.d.c.Policy.Match(repo); !ok {
			continue // no rule: never contact that registry
		}
		dg, ok := resolved[f.Image]
		if !ok {
			d, err := h.d.c.Registry.Resolve(ctx, tag)
			if err != nil {
				if ctx.Err() != nil {
					err = fmt.Errorf("%w: %w", ErrDeadline, err)
				}
				return deny(&ImageError{Field: f.Field, Container: f.Container, Image: f.Image, Err: fmt.Errorf("resolving the tag to a digest: %w", err)})
			}
			dg = tag.Context().Digest(d.DigestStr()).String()
			resolved[f.Image] = dg
		}
		ops = append(ops, jsonpatch.NewOperation("replace", f.Patch, dg))
	}
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			return deny(err)
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}
