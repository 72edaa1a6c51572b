package pipelinerun

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	intoto "github.com/in-toto/attestation/go/v1"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/trustroot"
	"github.com/stepseal/stepseal/pkg/verify"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// Event reasons of the VSA step.
const (
	// ReasonVSASigned: a PASSED VSA was signed, stored and attached.
	ReasonVSASigned = "VSASigned"
	// ReasonVSAFailed: the run's links do not verify against its layout; a
	// FAILED VSA was signed and stored (admission accepts PASSED only).
	ReasonVSAFailed = "VSAFailed"
	// ReasonVSASkipped: no VSA, and why (no trusted layout, no image).
	ReasonVSASkipped = "VSASkipped"
)

// summaryInput is what the VSA step reads of a run that was just signed.
type summaryInput struct {
	pr       *v1.PipelineRun
	pipeline string
	runID    string
	// images are the run's published images, "<repository>@sha256:<hex>".
	images []string
	// links are the run's links and skip records, as stored; provenance
	// the children's and the run's provenance entries.
	links, provenance []store.Entry
	backends          []lifecycle.Backend
}

// summarize is the VSA step, after the run's provenance is stored, when
// vsa.enabled:
//
//  1. the layout: layouts/<pipeline>.layout from the controller's TUF
//     trust root, the only layout it can trust (owners = the keys of the
//     role TUF delegates the path to); no trust root or no released
//     layout: no VSA, a VSASkipped Event, and the run stays signed;
//  2. verify the run's stored links against it (pkg/verify), binding the
//     run's images as the declared outputs;
//  3. per repository the run published to, sign a VSA — PASSED or FAILED —
//     with the verifier key (vsa.secret in the system namespace, or
//     vsa.kms): policy = the layout's TUF path, role, version and digest;
//     inputs = every link, skip record and provenance with its log index
//     and its signers' key IDs (vsa.ExtInputSigners);
//  4. store the VSAs in every store backend, attach each to its images
//     (oci backend: cosign .att and OCI 1.1 referrer), annotate the run
//     stepseal.dev/vsa, and record an Event.
//
// Errors of "could not check" (TUF, store, registry or KMS unreachable) and
// a verifier key that cannot be loaded are returned: the lifecycle retries
// the attempt, whose earlier parts reuse what they stored.
func (r *Kind) summarize(ctx context.Context, in summaryInput, cfg *settings.Config) error {
	if !cfg.VSA.Enabled {
		return nil
	}
	if len(in.images) == 0 {
		r.event(in.pr, corev1.EventTypeNormal, ReasonVSASkipped, "no VSA: the run published no image")
		return nil
	}
	// 1.
	var root *trustroot.Root
	if r.Trust != nil {
		root = r.Trust()
	}
	if root == nil {
		r.event(in.pr, corev1.EventTypeWarning, ReasonVSASkipped,
			"no VSA: no verified TUF trust root (trust.url unset, or not refreshed yet), so no layout the controller can trust")
		return nil
	}
	doc, err := root.Layout(ctx, in.pipeline)
	if errors.Is(err, reject.ErrUnableToCheck) {
		return fmt.Errorf("VSA: layout of pipeline %s: %w", in.pipeline, err)
	}
	if err != nil {
		r.event(in.pr, corev1.EventTypeWarning, ReasonVSASkipped, "no VSA: no trusted layout for pipeline %s: %v", in.pipeline, err)
		return nil
	}
	owners, threshold, err := doc.Owners()
	if err != nil {
		r.event(in.pr, corev1.EventTypeWarning, ReasonVSASkipped, "no VSA: layout %s: %v", doc.Describe(), err)
		return nil
	}
	signer, err := r.SystemSigner(ctx, cfg.VSA.Secret, cfg.VSA.KMS)
	if err != nil {
		return fmt.Errorf("VSA verifier key: %w", err)
	}
	keyID, err := signer.KeyID()
	if err != nil {
		return err
	}
	// The verifier key vouches for whole runs; the key that signs a
	// namespace's links and provenance must not be able to.
	if runSigner, err := r.Signer(ctx, in.pr.Namespace, cfg); err == nil {
		if id, _ := runSigner.KeyID(); id == keyID {
			r.event(in.pr, corev1.EventTypeWarning, ReasonVSASkipped, "no VSA: the verifier key (%s) is the key that signs namespace %s's runs; give the VSA a key of its own", keyID[:16], in.pr.Namespace)
			return nil
		}
	}

	// 2.
	links := verify.Memory{}
	for _, e := range in.links {
		links[e.Name] = e.Data
	}
	outputs := map[string]run.DigestSet{}
	groups := map[string][]name.Digest{} // resourceUri → images
	for _, img := range in.images {
		d, err := name.NewDigest(img)
		if err != nil {
			return fmt.Errorf("VSA: image %s: %w", img, err)
		}
		_, hex, _ := strings.Cut(d.DigestStr(), ":")
		outputs[d.Context().Name()] = run.DigestSet{"sha256": hex}
		uri := vsa.ResourceURI(d.Context().RegistryStr(), d.Context().RepositoryStr())
		groups[uri] = append(groups[uri], d)
	}
	verdict, verr := verify.Layout(ctx, doc.Data, owners, links, verify.Options{
		RunID: in.runID, Artifacts: outputs, LayoutThreshold: threshold, LayoutName: doc.Describe(),
	})
	if verdict == nil {
		return fmt.Errorf("VSA: verifying run %s against %s: %w", in.runID, doc.Describe(), verr)
	}
	result := vsa.Passed
	if !verdict.Passed {
		result = vsa.Failed
	}

	// 3.
	inputs := r.inputs(ctx, in)
	previous, err := r.previousSummaries(ctx, in)
	if err != nil {
		return err
	}
	now := time.Now()
	var entries []store.Entry
	envs := map[string]int{} // resourceUri → index in entries
	for _, uri := range slices.Sorted(maps.Keys(groups)) {
		var subjects []*intoto.ResourceDescriptor
		var digests []string
		for _, d := range groups[uri] {
			sub, err := vsa.ImageSubject(d.Context().Name() + "@" + d.DigestStr())
			if err != nil {
				return err
			}
			subjects = append(subjects, sub)
			digests = append(digests, d.DigestStr())
		}
		sum := vsa.Summary{
			VerifierID: cfg.VSA.VerifierID, Time: now, ResourceURI: uri, Subjects: subjects,
			PolicyURI:    vsa.PolicyURI(doc.Path, doc.Role, doc.RoleVersion),
			PolicyDigest: map[string]string{"sha256": strings.TrimPrefix(store.Digest(doc.Data), "sha256:")},
			Inputs:       inputs, Result: result,
		}
		entryName := seal.VSAName(in.pr.Namespace, in.pr.Name, keyID, uri)
		data, ok := reusable(previous[entryName], sum)
		if !ok {
			if _, data, err = vsa.Sign(ctx, sum, signer); err != nil {
				return err
			}
		}
		envs[uri] = len(entries)
		entries = append(entries, store.Entry{Kind: store.KindAttestation, Name: entryName, RunID: in.runID, Subjects: digests, Data: data})
	}

	// 4.
	if _, err := seal.Put(ctx, lifecycle.Targets(in.backends), entries); err != nil {
		return fmt.Errorf("VSA: %w", err)
	}
	for uri, i := range envs {
		env, err := seal.Envelope(entries[i])
		if err != nil {
			return err
		}
		for _, b := range in.backends {
			if b.Images == nil {
				continue
			}
			for _, d := range groups[uri] {
				if err := b.AttachImage(ctx, d.String(), env, signer.Public()); err != nil {
					return fmt.Errorf("VSA: backend %s: attaching to %s: %w", b.Name, d, err)
				}
			}
		}
	}
	var sums []string
	for _, e := range entries {
		sums = append(sums, store.Digest(e.Data))
	}
	lifecycle.Annotate(ctx, annotations.VSA, strings.Join(sums, ","))
	logging.FromContext(ctx).Infow("VSA signed", "result", result, "layout", doc.Describe(), "vsas", sums)
	if result == vsa.Passed {
		r.event(in.pr, corev1.EventTypeNormal, ReasonVSASigned, "VSA %s (%s) for %d image(s) against %s",
			result, strings.Join(sums, ","), len(in.images), doc.Describe())
		return nil
	}
	var why []string
	for _, f := range verdict.Failures {
		why = append(why, f.Error())
	}
	if len(why) > 3 {
		why = append(why[:3], fmt.Sprintf("and %d more", len(why)-3))
	}
	r.event(in.pr, corev1.EventTypeWarning, ReasonVSAFailed, "VSA %s (%s) against %s: %s",
		result, strings.Join(sums, ","), doc.Describe(), strings.Join(why, "; "))
	return nil
}

// previousSummaries are the VSAs an earlier attempt stored for the run in
// the first store backend, by name.
func (r *Kind) previousSummaries(ctx context.Context, in summaryInput) (map[string]store.Entry, error) {
	out := map[string]store.Entry{}
	targets := lifecycle.Targets(in.backends)
	if len(targets) == 0 {
		return out, nil
	}
	es, err := targets[0].Store.List(ctx, store.Filter{Kind: store.KindAttestation, RunID: in.runID})
	if err != nil {
		return nil, fmt.Errorf("VSA: backend %s: listing run %s: %w", targets[0].Name, in.runID, err)
	}
	for _, e := range es {
		out[e.Name] = e
	}
	return out, nil
}

// reusable returns the bytes of prev, a VSA an interrupted attempt stored,
// when it says exactly what s says but for the time of verification: a
// retry then stores and attaches the same VSA instead of a second one.
func reusable(prev store.Entry, s vsa.Summary) ([]byte, bool) {
	if len(prev.Data) == 0 {
		return nil, false
	}
	old, err := vsa.Parse(prev.Data, prev.Name)
	if err != nil {
		return nil, false
	}
	s.Time = old.Predicate.GetTimeVerified().AsTime()
	st, err := vsa.Statement(s)
	if err != nil {
		return nil, false
	}
	return seal.ReusableStatement(prev, st)
}

// inputs describes every link, skip record and provenance the step read,
// with its log index in the first backend that logs entries (an
// idempotent PutIndexed of the stored bytes answers it), else without.
func (r *Kind) inputs(ctx context.Context, in summaryInput) []vsa.Input {
	var logged store.IndexedPutter
	for _, b := range in.backends {
		if ip, ok := b.Store.(store.IndexedPutter); ok {
			logged = ip
			break
		}
	}
	var out []vsa.Input
	for _, e := range slices.Concat(in.links, in.provenance) {
		idx := int64(-1)
		if logged != nil {
			if _, i, err := logged.PutIndexed(ctx, e); err == nil {
				idx = int64(i)
			} else {
				logging.FromContext(ctx).Warnw("VSA input without a log index", "entry", e.Name, "error", err)
			}
		}
		// The signers let admission refuse the VSA once a key that signed
		// an input is revoked; an input whose signers cannot be read is
		// listed without (and such a VSA is refused where that is checked).
		signers, err := vsa.SignerKeyIDs(e.Data)
		if err != nil {
			logging.FromContext(ctx).Warnw("VSA input without its signers", "entry", e.Name, "error", err)
		}
		out = append(out, vsa.Input{URI: vsa.InputURI(e.Name, idx), Signers: signers,
			Digest: map[string]string{"sha256": strings.TrimPrefix(store.Digest(e.Data), "sha256:")}})
	}
	return out
}

// event records an Event on pr (Tekton's kinds are in client-go's scheme:
// package lifecycle registers them).
func (r *Kind) event(pr *v1.PipelineRun, typ, reason, format string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(pr, typ, reason, format, args...)
}
