package admission

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/reject"
)

// DefaultDeadline is the decision's own deadline: below the webhook's
// timeoutSeconds (10), so a slow registry is denied with stepseal's message
// rather than the apiserver's.
const DefaultDeadline = 8 * time.Second

// VSAChecker checks the "vsa" requirement: a VSA for image, signed by the
// rule's verifier identity, PASSED, subject = image's digest, not older
// than rule.VSA.MaxAge. Refusals must match reject.ErrRefused, failures to
// check reject.ErrUnableToCheck. pkg/vsa provides the admission-grade one.
type VSAChecker interface {
	Check(ctx context.Context, image name.Digest, rule *Rule) error
}

// KeySource gives the keys trusted to sign the images of repo under a
// "signed" rule with keysFrom: trust — the keys of the TUF role that owns
// the repository's path. Its answers must change only with TrustVersion.
type KeySource interface {
	KeysFor(ctx context.Context, repo string, rule *Rule) ([]crypto.PublicKey, error)
}

// Config is what a Decider decides with.
type Config struct {
	Policy *Policy
	// Platform is this cluster's platform name (encrypted images). With
	// Nodes, the platform of a Pod is its node's instead, and Platform is
	// only CheckImage's.
	Platform string
	// Nodes, when set, makes the cluster multi-platform: a Pod's encrypted
	// images are checked for the platform of the node it is bound to
	// (spec.nodeName) or pinned to (spec.nodeSelector[Nodes.Label]).
	Nodes *NodePlatforms
	// PlatformPolicy is the platform policy encrypted images' recipients
	// must equal; without one every encrypted image is refused.
	PlatformPolicy *policy.Policy
	// Registry reads manifests and signatures.
	Registry *oci.Client
	// Keys serves keysFrom: trust rules; without one they refuse.
	Keys KeySource
	// VSA checks "vsa" rules; without one they refuse.
	VSA VSAChecker
	// TrustVersion names the trust state the keys come from (a TUF
	// snapshot version); part of the cache key. Nil: "".
	TrustVersion func() string
	// Cache keeps verdicts; a private one of default size when nil.
	Cache *Cache
	// Deadline bounds a decision; DefaultDeadline when 0.
	Deadline time.Duration
}

// NodePlatforms tells the platforms of a multi-platform cluster's nodes
// apart: a node's platform is the value of its label Label. Use a label
// under node-restriction.kubernetes.io/ (e.g.
// node-restriction.kubernetes.io/stepseal-platform): the NodeRestriction
// admission plugin keeps a kubelet from setting those on its own Node, so
// a node cannot claim another platform's images.
type NodePlatforms struct {
	Label string
	// Node returns the node of that name (an informer's lister, or the API).
	Node func(ctx context.Context, name string) (*corev1.Node, error)
}

// platformOf is the platform pod's encrypted images are checked for: its
// node's when it is bound to one (spec.nodeName, set by whoever creates
// it or by the scheduler's binding before an UPDATE), else the one its
// nodeSelector pins it to — the scheduler only binds it to a node with
// that label. A Pod pinned to none could land on any platform's node, so
// it may have no encrypted image (ErrPlatform); a node that cannot be
// read is ErrNodeUnavailable.
func (n *NodePlatforms) platformOf(ctx context.Context, pod *corev1.Pod) (string, error) {
	if node := pod.Spec.NodeName; node != "" {
		no, err := n.Node(ctx, node)
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("%w: the Pod is bound to node %s, which does not exist", ErrPlatform, node)
		}
		if err != nil {
			return "", fmt.Errorf("%w: node %s: %w", ErrNodeUnavailable, node, err)
		}
		p := no.Labels[n.Label]
		if p == "" {
			return "", fmt.Errorf("%w: the Pod is bound to node %s, which has no %s label: its platform is not known", ErrPlatform, node, n.Label)
		}
		return p, nil
	}
	if p := pod.Spec.NodeSelector[n.Label]; p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%w: in a multi-platform cluster a Pod with an encrypted image must be pinned to a platform: spec.nodeSelector %s: <platform> (or spec.nodeName)", ErrPlatform, n.Label)
}

// Decider decides Pods. Safe for concurrent use.
type Decider struct{ c Config }

// NewDecider checks cfg.
func NewDecider(cfg Config) (*Decider, error) {
	if cfg.Policy == nil {
		return nil, errors.New("admission: a policy is required")
	}
	if cfg.Registry == nil {
		r, err := oci.New()
		if err != nil {
			return nil, err
		}
		cfg.Registry = r
	}
	if cfg.Cache == nil {
		cfg.Cache = NewCache(CacheOptions{})
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = DefaultDeadline
	}
	return &Decider{c: cfg}, nil
}

// Decision is the verdict on a Pod.
type Decision struct {
	// Allowed is false when any image field of an enforce rule (or of no
	// rule) was refused or could not be checked.
	Allowed bool `json:"allowed"`
	// Warnings are the refusals of warn-mode rules.
	Warnings []string `json:"warnings,omitempty"`
	// Images are the per-field results, in Pod order.
	Images []ImageResult `json:"images"`
}

// ImageResult is the verdict on one image field.
type ImageResult struct {
	Field     string `json:"field"`
	Container string `json:"container"`
	Image     string `json:"image"`
	Rule      string `json:"rule,omitempty"`
	Mode      string `json:"mode,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
	// Reason is the pkg/reject reason of a refusal ("" when admitted).
	Reason string `json:"reason,omitempty"`
	// Message explains a refusal.
	Message string `json:"message,omitempty"`
	Err     error  `json:"-"`
}

// Message is the text of a denial: every refused field, one per line.
func (d Decision) Message() string {
	var out []string
	for _, r := range d.Images {
		if r.Err != nil && r.Mode != ModeWarn {
			out = append(out, r.Message)
		}
	}
	return strings.Join(out, "\n")
}

// Err is the first refusal of the decision (nil if allowed).
func (d Decision) Err() error {
	for _, r := range d.Images {
		if r.Err != nil && r.Mode != ModeWarn {
			return r.Err
		}
	}
	return nil
}

// ImageField is one place a Pod names an image.
type ImageField struct {
	// Field is the path for messages, Patch the JSON pointer.
	Field, Patch string
	Container    string
	Image        string
	PullPolicy   corev1.PullPolicy
}

// ImageFields lists every image a Pod spec names: initContainers,
// containers, ephemeralContainers and image volumes.
func ImageFields(spec *corev1.PodSpec) []ImageField {
	var out []ImageField
	add := func(kind string, i int, c *corev1.Container) {
		out = append(out, ImageField{
			Field: fmt.Sprintf("spec.%s[%d].image", kind, i), Patch: fmt.Sprintf("/spec/%s/%d/image", kind, i),
			Container: c.Name, Image: c.Image, PullPolicy: c.ImagePullPolicy,
		})
	}
	for i := range spec.InitContainers {
		add("initContainers", i, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		add("containers", i, &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		add("ephemeralContainers", i, (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	for i, v := range spec.Volumes {
		if v.Image == nil {
			continue
		}
		out = append(out, ImageField{
			Field: fmt.Sprintf("spec.volumes[%d].image.reference", i), Patch: fmt.Sprintf("/spec/volumes/%d/image/reference", i),
			Container: v.Name, Image: v.Image.Reference, PullPolicy: v.Image.PullPolicy,
		})
	}
	return out
}

// Decide decides pod. With old (an UPDATE, or the ephemeralcontainers
// subresource), only image fields that differ from old are checked: the
// others were admitted when they were set, and re-deciding them would
// block Tekton's sidecar-stop patch on a Pod whose step image was revoked
// since. Distinct images are checked once each, concurrently, within the
// Decider's deadline; an image no rule covers is refused before any
// registry is contacted.
func (d *Decider) Decide(ctx context.Context, pod, old *corev1.Pod) Decision {
	fields := ImageFields(&pod.Spec)
	if old != nil {
		before := map[string]string{}
		for _, f := range ImageFields(&old.Spec) {
			before[f.Field] = f.Image
		}
		fields = slices.DeleteFunc(fields, func(f ImageField) bool {
			img, ok := before[f.Field]
			return ok && img == f.Image
		})
	}
	platform, perr := d.c.Platform, error(nil)
	if d.c.Nodes != nil {
		platform, perr = d.c.Nodes.platformOf(ctx, pod)
	}
	return d.decide(ctx, fields, platform, perr)
}

// DecideImages decides image fields directly (the offline check), for
// Config.Platform.
func (d *Decider) DecideImages(ctx context.Context, fields []ImageField) Decision {
	return d.decide(ctx, fields, d.c.Platform, nil)
}

type target struct {
	ref  name.Digest
	rule *Rule
	err  error
	v    verdict
	done bool
}

// decide decides fields for platform; perr, when set, is why the Pod's
// platform is not known, and refuses its encrypted images.
func (d *Decider) decide(ctx context.Context, fields []ImageField, platform string, perr error) Decision {
	ctx, cancel := context.WithTimeout(ctx, d.c.Deadline)
	defer cancel()
	// 1. Classify every field without the network: digest syntax, rule.
	targets := map[string]*target{}
	per := make([]*target, len(fields))
	for i, f := range fields {
		t, ok := targets[f.Image]
		if !ok {
			t = &target{}
			t.ref, t.rule, t.err = d.classify(f.Image)
			t.done = t.err != nil
			targets[f.Image] = t
		}
		per[i] = t
	}
	// 2. One check per distinct image, concurrently.
	var wg sync.WaitGroup
	for _, t := range targets {
		if t.done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.v, t.err = d.check(ctx, t.ref, t.rule, platform)
		}()
	}
	wg.Wait()
	// 3. Per field: the image's verdict, then the field's own rules.
	dec := Decision{Allowed: true, Images: []ImageResult{}}
	for i, f := range fields {
		t := per[i]
		r := ImageResult{Field: f.Field, Container: f.Container, Image: f.Image, Encrypted: t.v.encrypted}
		err := t.err
		if perr != nil && t.v.encrypted && (err == nil || errors.Is(err, ErrPlatform)) {
			err = perr
		}
		if t.rule != nil {
			r.Rule, r.Mode = t.rule.Name, t.rule.Mode
		}
		if err == nil && t.v.encrypted && f.PullPolicy != corev1.PullAlways {
			err = fmt.Errorf("%w (it has %q): without Always the kubelet starts it from what the node holds without asking the registry", ErrPullPolicy, orDefault(string(f.PullPolicy)))
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrDeadline) {
				err = fmt.Errorf("%w: %w", ErrDeadline, err)
			}
			if errors.Is(err, ErrDeadline) {
				err = fmt.Errorf("stepseal could not check it within %s: %w", d.c.Deadline, err)
			}
			r.Err = &ImageError{Field: f.Field, Container: f.Container, Image: f.Image, Rule: r.Rule, Err: err}
			r.Message = r.Err.Error()
			if rs := reject.Of(err); rs != nil {
				r.Reason = rs.Error()
			}
			if r.Mode == ModeWarn {
				dec.Warnings = append(dec.Warnings, "stepseal (warn mode): "+r.Message)
			} else {
				dec.Allowed = false
			}
		}
		dec.Images = append(dec.Images, r)
	}
	return dec
}

func orDefault(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// classify parses an image reference, requiring a sha256 digest, and finds
// its rule. It never contacts a registry.
func (d *Decider) classify(img string) (name.Digest, *Rule, error) {
	at := strings.LastIndexByte(img, '@')
	if at < 0 {
		if _, err := name.ParseReference(img); err != nil {
			return name.Digest{}, nil, fmt.Errorf("%w: %w", ErrBadReference, err)
		}
		return name.Digest{}, nil, fmt.Errorf("%w (REPO@sha256:<hex>): a tag can move after admission", ErrNotByDigest)
	}
	if dg := img[at+1:]; !digestRE.MatchString(dg) {
		return name.Digest{}, nil, fmt.Errorf("%w: digest %q is not sha256:<64 lower-case hex>", ErrBadReference, dg)
	}
	ref, err := name.NewDigest(img)
	if err != nil {
		return name.Digest{}, nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	repo, err := policy.Repository(ref.Context().Name())
	if err != nil {
		return name.Digest{}, nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	rule, ok := d.c.Policy.Match(repo)
	if !ok {
		return ref, nil, fmt.Errorf("%w: repository %s matches no rule of the admission policy (its registry was not contacted)", ErrNoRule, repo)
	}
	return ref, rule, nil
}

func (d *Decider) check(ctx context.Context, ref name.Digest, rule *Rule, platform string) (verdict, error) {
	if rule.Require == RequireDigest {
		// No registry contact, nothing to cache.
		if !rule.Digests[ref.DigestStr()] {
			return verdict{}, fmt.Errorf("%w: %s is not among the %d pinned digests", ErrDigestNotAllowed, ref.DigestStr(), len(rule.Digests))
		}
		return verdict{}, nil
	}
	tv := ""
	if d.c.TrustVersion != nil {
		tv = d.c.TrustVersion()
	}
	k := cacheKey{digest: ref.String(), rule: rule.Name, trust: tv, platform: platform, policy: d.c.Policy.Digest}
	return d.c.Cache.do(ctx, k, func(ctx context.Context) (verdict, error) { return d.verify(ctx, ref, rule, platform) })
}

// verify runs a rule's requirement, then the encryption check.
func (d *Decider) verify(ctx context.Context, ref name.Digest, rule *Rule, platform string) (verdict, error) {
	switch rule.Require {
	case RequireSigned:
		keys := rule.Keys
		if rule.FromTrust {
			if d.c.Keys == nil {
				return verdict{}, fmt.Errorf("%w: rule takes its keys from the trust source and none is configured", errNoChecker)
			}
			var err error
			if keys, err = d.c.Keys.KeysFor(ctx, ref.Context().Name(), rule); err != nil {
				return verdict{}, err
			}
			if len(keys) == 0 {
				return verdict{}, fmt.Errorf("%w: the trust source names no key for %s", reject.ErrUnauthorized, ref.Context().Name())
			}
		}
		var errs []error
		ok := false
		for _, k := range keys {
			_, err := d.c.Registry.VerifySignatures(ctx, ref, k)
			if err == nil {
				ok = true
				break
			}
			errs = append(errs, err)
		}
		if !ok {
			return verdict{}, errors.Join(errs...)
		}
	case RequireVSA:
		if d.c.VSA == nil {
			return verdict{}, fmt.Errorf("%w: rule requires a VSA and no VSA checker is configured", errNoChecker)
		}
		if err := d.c.VSA.Check(ctx, ref, rule); err != nil {
			return verdict{}, err
		}
	}
	return d.encryption(ctx, ref, rule, platform)
}

// encryption reads the manifest (no layer) and, for an encrypted image,
// requires this platform in the rule and the recipients to be exactly the
// platform policy's; for a plaintext image whose platform-policy rule says
// encrypt, refuses it. A multi-platform index has every child checked so
// (indexEncryption).
func (d *Decider) encryption(ctx context.Context, ref name.Digest, rule *Rule, platform string) (verdict, error) {
	img, idx, err := d.c.Registry.PullManifest(ctx, ref)
	if err != nil {
		return verdict{}, err
	}
	if idx != nil {
		return d.indexEncryption(ref, idx, rule, platform)
	}
	return d.imageEncryption(img, ref.Context().Name(), rule, platform)
}

// imageEncryption checks one image manifest of repository repo.
func (d *Decider) imageEncryption(img v1.Image, repo string, rule *Rule, platform string) (verdict, error) {
	rs, err := crypt.Recipients(img)
	if err != nil {
		return verdict{}, err
	}
	pp := d.c.PlatformPolicy
	if len(rs) == 0 {
		if pp != nil {
			if pr, err := pp.Rule(repo); err == nil && pr.Encrypt {
				return verdict{}, crypt.CheckRecipients(img, pp, repo)
			}
		}
		return verdict{}, nil
	}
	v := verdict{encrypted: true}
	if !slices.Contains(rule.Platforms, platform) || platform == "" {
		return v, fmt.Errorf("%w: platform %q is not among rule %q's platforms %v", ErrPlatform, platform, rule.Name, rule.Platforms)
	}
	if pp == nil {
		return v, fmt.Errorf("%w: no platform policy to check its recipients against", ErrPlatform)
	}
	if err := crypt.CheckRecipients(img, pp, repo); err != nil {
		return v, err
	}
	// The recipients are the platform policy's; this platform must be one
	// of them, or its nodes could not decrypt what admission authorised.
	if pr, err := pp.Rule(repo); err != nil || !slices.ContainsFunc(pr.Platforms, func(p policy.Platform) bool { return p.Name == platform }) {
		return v, fmt.Errorf("%w: platform %q is not a recipient under platform policy %q", ErrPlatform, platform, pp.Name)
	}
	return v, nil
}

// CheckImage decides one image as a container of a Pod would be decided,
// with pullPolicy as its imagePullPolicy: what `stepseal admission check`
// reproduces offline.
func (d *Decider) CheckImage(ctx context.Context, image string, pullPolicy corev1.PullPolicy) Decision {
	return d.decide(ctx, []ImageField{{Field: "image", Patch: "/image", Container: "check", Image: image, PullPolicy: pullPolicy}}, d.c.Platform, nil)
}
