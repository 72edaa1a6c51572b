package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/stepseal/stepseal/pkg/reject"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrLabelGuard: a user who may edit a Namespace, but is not an admin,
// changed or removed its admission opt-in label. reject.ErrUnauthorized.
var ErrLabelGuard = reject.Sentinel(reject.ErrUnauthorized, "only a cluster admin may change a namespace's admission label")

var namespaceKind = metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"}

// LabelGuard is a validating webhook for Namespace UPDATE: once a
// namespace carries Label, only members of AdminGroups may change or
// remove it. Anyone allowed to edit a Namespace could otherwise switch
// admission off for it (Connaisseur's namespaced validation warns of
// exactly this).
type LabelGuard struct {
	Label string
	// AdminGroups may change the label; system:masters when empty.
	AdminGroups []string
}

func (g *LabelGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewSize+1))
	if err != nil || len(body) > MaxReviewSize {
		http.Error(w, "request body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	out := &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		out.Response = deny(fmt.Errorf("%w: %v", ErrReview, err))
	} else {
		out.Response = g.respond(in.Request)
		out.Response.UID = in.Request.UID
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (g *LabelGuard) respond(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind != namespaceKind || req.SubResource != "" {
		return deny(fmt.Errorf("%w: unexpected %s (subresource %q); the label guard admits Namespaces", ErrReview, req.Kind.Kind, req.SubResource))
	}
	if req.Operation != admissionv1.Update {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var ns, old corev1.Namespace
	if json.Unmarshal(req.Object.Raw, &ns) != nil || json.Unmarshal(req.OldObject.Raw, &old) != nil {
		return deny(fmt.Errorf("%w: namespace objects do not decode", ErrReview))
	}
	was, had := old.Labels[g.Label]
	now, has := ns.Labels[g.Label]
	if !had || (has && now == was) {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	admins := g.AdminGroups
	if len(admins) == 0 {
		admins = []string{"system:masters"}
	}
	for _, grp := range req.UserInfo.Groups {
		if slices.Contains(admins, grp) {
			return &admissionv1.AdmissionResponse{Allowed: true}
		}
	}
	change := fmt.Sprintf("removing %s=%s", g.Label, was)
	if has {
		change = fmt.Sprintf("changing %s from %q to %q", g.Label, was, now)
	}
	return deny(fmt.Errorf("%w: namespace %s: %s by %s (groups %v; admins are %v)", ErrLabelGuard, ns.Name, change, req.UserInfo.Username, req.UserInfo.Groups, admins))
}
