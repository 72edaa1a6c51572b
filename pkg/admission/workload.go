package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PathWorkloads serves WorkloadHandler.
const PathWorkloads = "/workloads"

// WorkloadHandler gives early feedback on the Pod templates of
// Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs
// (what Kyverno's autogen and policy-controller give): it NEVER denies, but
// answers with an AdmissionResponse warning (kubectl prints it) for every
// template image the Pod webhooks would deny, and why. It decides as they
// do, with the same Decider and verdict cache: a tag that a rule covers is
// resolved to the digest the registry serves now, as the mutating webhook
// would, and the digest is decided; an image no rule covers is refused
// without contacting its registry. On an UPDATE only the template's image
// fields that changed are decided. Its webhook's failurePolicy is Ignore:
// the Pods are checked anyway when they are created.
func WorkloadHandler(d *Decider) http.Handler { return &workloadHandler{d: d} }

type workloadHandler struct{ d *Decider }

// workloadResources are the kinds WorkloadHandler reads a Pod template of.
var workloadResources = map[metav1.GroupVersionResource]bool{
	{Group: "apps", Version: "v1", Resource: "deployments"}:  true,
	{Group: "apps", Version: "v1", Resource: "replicasets"}:  true,
	{Group: "apps", Version: "v1", Resource: "statefulsets"}: true,
	{Group: "apps", Version: "v1", Resource: "daemonsets"}:   true,
	{Group: "batch", Version: "v1", Resource: "jobs"}:        true,
	{Group: "batch", Version: "v1", Resource: "cronjobs"}:    true,
}

func (h *workloadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewSize+1))
	if err != nil || len(body) > MaxReviewSize {
		http.Error(w, "request body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h.Review(r.Context(), body))
}

// Review answers one AdmissionReview body: always allowed (a review it
// cannot read gets a warning saying so, or, without a request, no
// response the apiserver accepts, which failurePolicy Ignore admits).
func (h *workloadHandler) Review(ctx context.Context, body []byte) *admissionv1.AdmissionReview {
	out := &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		if err == nil {
			err = errors.New("no request")
		}
		out.Response = &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{fmt.Sprintf("stepseal: %v: %v", ErrReview, err)}}
		return out
	}
	req := in.Request
	out.Response = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true, Warnings: h.warnings(ctx, req)}
	return out
}

func (h *workloadHandler) warnings(ctx context.Context, req *admissionv1.AdmissionRequest) []string {
	if !workloadResources[req.Resource] || req.SubResource != "" {
		return []string{fmt.Sprintf("stepseal: %v: unexpected %s %s (subresource %q); stepseal warns about workloads' Pod templates", ErrReview, req.Operation, req.Resource.Resource, req.SubResource)}
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return nil
	}
	spec, err := podTemplate(req.Resource.Resource, req.Object.Raw)
	if err != nil {
		return []string{fmt.Sprintf("stepseal: %v: object: %v", ErrReview, err)}
	}
	var old *corev1.Pod
	if req.Operation == admissionv1.Update {
		oldSpec, err := podTemplate(req.Resource.Resource, req.OldObject.Raw)
		if err != nil {
			return []string{fmt.Sprintf("stepseal: %v: oldObject: %v", ErrReview, err)}
		}
		old = &corev1.Pod{Spec: *oldSpec}
	}
	pod := &corev1.Pod{Spec: *spec}
	ctx, cancel := context.WithTimeout(ctx, h.d.c.Deadline)
	defer cancel()
	// As the mutating webhook would: covered tags become digests.
	var out []string
	resolved := map[string]string{}
	ptrs := imagePointers(&pod.Spec)
	var oldPtrs map[string]*string
	if old != nil {
		oldPtrs = imagePointers(&old.Spec)
	}
	unresolved := map[string]bool{}
	for _, f := range ImageFields(&pod.Spec) {
		if p := oldPtrs[f.Field]; p != nil && *p == f.Image {
			continue // unchanged: not decided (nor resolved)
		}
		dg, err := h.d.resolveTag(ctx, f.Image, resolved)
		if err != nil {
			// The mutating webhook would deny the Pod with this error.
			out = append(out, h.warning(req, (&ImageError{Field: f.Field, Container: f.Container, Image: f.Image, Err: fmt.Errorf("resolving the tag to a digest: %w", err)}).Error()))
			unresolved[f.Field] = true
			continue
		}
		if dg != "" {
			*ptrs[f.Field] = dg
		}
	}
	dec := h.d.Decide(ctx, pod, old)
	for _, r := range dec.Images {
		if r.Err == nil || unresolved[r.Field] {
			continue
		}
		msg := r.Message
		if r.Mode == ModeWarn {
			msg += " (warn mode: its Pods would be admitted with this warning)"
		}
		out = append(out, h.warning(req, msg))
	}
	return out
}

func (h *workloadHandler) warning(req *admissionv1.AdmissionRequest, msg string) string {
	kind, name := req.Kind.Kind, req.Name
	if kind == "" {
		kind = req.Resource.Resource
	}
	if name == "" {
		name = "(name to be generated)"
	}
	return fmt.Sprintf("stepseal: the Pods of %s %s would be denied: %s", kind, name, msg)
}

// podTemplate decodes a workload and returns its Pod template's spec.
func podTemplate(resource string, raw []byte) (*corev1.PodSpec, error) {
	if len(raw) == 0 {
		return nil, errors.New("empty")
	}
	var obj interface{ template() *corev1.PodSpec }
	switch resource {
	case "deployments":
		obj = &deployment{}
	case "replicasets":
		obj = &replicaSet{}
	case "statefulsets":
		obj = &statefulSet{}
	case "daemonsets":
		obj = &daemonSet{}
	case "jobs":
		obj = &job{}
	case "cronjobs":
		obj = &cronJob{}
	default:
		return nil, fmt.Errorf("resource %q has no Pod template stepseal knows", resource)
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, err
	}
	return obj.template(), nil
}

type (
	deployment  appsv1.Deployment
	replicaSet  appsv1.ReplicaSet
	statefulSet appsv1.StatefulSet
	daemonSet   appsv1.DaemonSet
	job         batchv1.Job
	cronJob     batchv1.CronJob
)

func (o *deployment) template() *corev1.PodSpec  { return &o.Spec.Template.Spec }
func (o *replicaSet) template() *corev1.PodSpec  { return &o.Spec.Template.Spec }
func (o *statefulSet) template() *corev1.PodSpec { return &o.Spec.Template.Spec }
func (o *daemonSet) template() *corev1.PodSpec   { return &o.Spec.Template.Spec }
func (o *job) template() *corev1.PodSpec         { return &o.Spec.Template.Spec }
func (o *cronJob) template() *corev1.PodSpec     { return &o.Spec.JobTemplate.Spec.Template.Spec }

// resolveTag returns the digest reference a covered tag resolves to now
// ("" for a digest, an unparsable reference or an uncovered repository:
// those are decided as they are, and an uncovered registry is never
// contacted). resolved memoizes within one review.
func (d *Decider) resolveTag(ctx context.Context, image string, resolved map[string]string) (string, error) {
	if dg, ok := resolved[image]; ok {
		return dg, nil
	}
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", nil
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return "", nil
	}
	if _, ok := d.c.Policy.Match(tag.Context().Name()); !ok {
		return "", nil
	}
	desc, err := d.c.Registry.Resolve(ctx, tag)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrDeadline, err)
		}
		return "", err
	}
	dg := tag.Context().Digest(desc.DigestStr()).String()
	resolved[image] = dg
	return dg, nil
}

// imagePointers maps each ImageFields field of spec to its image string.
func imagePointers(spec *corev1.PodSpec) map[string]*string {
	out := map[string]*string{}
	add := func(kind string, i int, p *string) { out[fmt.Sprintf("spec.%s[%d].image", kind, i)] = p }
	for i := range spec.InitContainers {
		add("initContainers", i, &spec.InitContainers[i].Image)
	}
	for i := range spec.Containers {
		add("containers", i, &spec.Containers[i].Image)
	}
	for i := range spec.EphemeralContainers {
		add("ephemeralContainers", i, &spec.EphemeralContainers[i].Image)
	}
	for i := range spec.Volumes {
		if spec.Volumes[i].Image != nil {
			out[fmt.Sprintf("spec.volumes[%d].image.reference", i)] = &spec.Volumes[i].Image.Reference
		}
	}
	return out
}
