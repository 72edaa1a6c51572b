package admission

import (
	"fmt"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Sentinels of admission's own refusals; the checks it runs (signatures,
// recipients, VSAs) keep their packages' errors, all matching pkg/reject.
var (
	// ErrNotByDigest: an image field names a tag; only a digest says what
	// will run.
	ErrNotByDigest = reject.Sentinel(reject.ErrPolicy, "image must be referenced by digest")
	// ErrBadReference: an image reference or its digest does not parse
	// (a "@sha1:" digest, a wrong length).
	ErrBadReference = reject.Sentinel(reject.ErrMalformed, "malformed image reference")
	// ErrNoRule: no admission rule covers the image's repository.
	ErrNoRule = reject.Sentinel(reject.ErrPolicy, "no admission rule covers the image")
	// ErrDigestNotAllowed: a "digest" rule covers the image, but its digest
	// is not in the rule's list.
	ErrDigestNotAllowed = reject.Sentinel(reject.ErrPolicy, "digest not allowed by the rule")
	// ErrPlatform: the image is encrypted and this platform is not among
	// the rule's platforms (or no platform policy is configured).
	ErrPlatform = reject.Sentinel(reject.ErrPolicy, "encrypted image not authorised for this platform")
	// ErrNodeUnavailable: in a multi-platform cluster, the node a Pod is
	// bound to could not be read, so its platform is not known
	// (reject.ErrUnavailable: could not check).
	ErrNodeUnavailable = reject.Sentinel(reject.ErrUnavailable, "node could not be read")
	// ErrPullPolicy: an encrypted image without imagePullPolicy: Always.
	// Always makes the kubelet fetch the manifest from the registry, with
	// the registry's authorisation, at every container start; with
	// IfNotPresent it does not contact the registry at all. Always does
	// not stop a node from running layers it already unpacked (decrypted)
	// for an earlier pull: containerd reuses those snapshots without
	// decrypting again.
	ErrPullPolicy = reject.Sentinel(reject.ErrPolicy, "encrypted image requires imagePullPolicy: Always")
	// ErrIndex: a multi-platform index admission cannot check child by
	// child: a child that is itself an index or not an image manifest, or
	// no child at all. Not checked, so refused.
	ErrIndex = reject.Sentinel(reject.ErrUnsupported, "multi-platform index not checkable")
	// ErrDeadline: the checks did not finish within the webhook's own
	// deadline; the image is denied, not admitted.
	ErrDeadline = reject.Sentinel(reject.ErrUnavailable, "admission deadline exceeded")
	// ErrInvalidPolicy: an admission policy document is refused.
	ErrInvalidPolicy = reject.Sentinel(reject.ErrMalformed, "invalid admission policy")
	// ErrReview: an AdmissionReview that cannot be decided (malformed, an
	// unexpected kind or resource).
	ErrReview = reject.Sentinel(reject.ErrMalformed, "malformed admission review")
)

// errNoChecker: a rule needs a checker (VSA, trust keys) the Decider was
// not given.
var errNoChecker = reject.Sentinel(reject.ErrUnsupported, "no checker configured for the rule")

// ImageError is the refusal of one image field of a Pod.
type ImageError struct {
	// Field is the JSON path of the image field ("spec.containers[0].image").
	Field string
	// Container names the container or volume.
	Container string
	Image     string
	// Rule is the admission rule that covered the image ("" if none did).
	Rule string
	Err  error
}

func (e *ImageError) Error() string {
	s := fmt.Sprintf("%s %s: image %s", kindOf(e.Field), e.Container, e.Image)
	if e.Rule != "" {
		s += fmt.Sprintf(" (rule %q)", e.Rule)
	}
	return s + ": " + e.Err.Error()
}

func (e *ImageError) Unwrap() error { return e.Err }

func kindOf(field string) string {
	switch {
	case len(field) > 13 && field[:13] == "spec.volumes[":
		return "volume"
	case len(field) > 20 && field[:20] == "spec.initContainers[":
		return "init container"
	case len(field) > 25 && field[:25] == "spec.ephemeralContainers[":
		return "ephemeral container"
	}
	return "container"
}
