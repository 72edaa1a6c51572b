package verify

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Options tune a verification. The zero value verifies as in-toto-golang
// does plus stepseal's run binding, with no expected output artifacts.
type Options struct {
	// LayoutThreshold is how many distinct owner keys must have signed the
	// layout. Zero means every owner key given (as in-toto-golang).
	LayoutThreshold int
	// Now is the time the layout's expiry is checked against; zero means
	// time.Now().
	Now time.Time
	// RunID, when set, is the stepseal.dev/run-id every link must carry.
	// When empty, all links must carry the same run ID (or none at all).
	RunID string
	// Artifacts are the declared output artifacts (URI -> digests): each
	// must equal the product of the last step that lists it among its
	// products. At least one is required unless WithoutArtifactUnsafe is
	// set: a verdict that binds no artifact says only that some supply
	// chain happened, not that it produced what the caller holds.
	Artifacts map[string]run.DigestSet
	// WithoutArtifactUnsafe lets Layout verify with no Artifacts (as
	// in-toto-golang does); the verdict then warns that no artifact was
	// bound. Callers set it only where no artifact exists (a test-only
	// pipeline) or where in-toto's behaviour is asked for explicitly.
	WithoutArtifactUnsafe bool
	// LayoutName names the layout in messages; default "layout".
	LayoutName string
	// Log is the evidence for the links of keys the layout rotated out
	// (attest.KeyRotation): such a link counts only if Log shows the
	// transparency log the layout names held it before the rotation. Nil:
	// no evidence, and such links are refused (RotatedKeyError).
	Log LogEvidence
	// Steps, when set, is the scope: the layout steps ("<task>.<step>") or
	// tasks (all their steps) to verify; the others are neither required
	// nor read (see restrict, step 3a). A gate in the middle of a pipeline
	// verifies the steps of the tasks that ran before it. Empty: every step.
	Steps []string
}

// LogEvidence shows where a transparency log holds a link (its
// implementation over stepseal's log is tlogstore.Evidence).
type LogEvidence interface {
	// Logged returns the index at which the log a names holds a link
	// record of digest ("sha256:<hex>"), if it is below a.Size and its
	// inclusion in the tree a anchors is proven; otherwise an error saying
	// why. An error matching reject.ErrUnableToCheck means the log could
	// not be read: no verdict.
	Logged(ctx context.Context, a attest.LogAnchor, digest string) (uint64, error)
}

// Verdict is the outcome of a verification.
type Verdict struct {
	Passed bool `json:"passed"`
	// RunID is the run the links were checked to come from (their
	// stepseal.dev/run-id): Options.RunID when given, else the one most of
	// them name; empty when none carries one.
	RunID string       `json:"runId,omitempty"`
	Steps []StepResult `json:"steps"`
	// Scope is Options.Steps as given: only Steps were verified.
	Scope []string `json:"scope,omitempty"`
	// Failures are every failure found, typed (see ErrVerification and its
	// categories); in JSON each is {"category","step","message"}.
	Failures []error  `json:"-"`
	Warnings []string `json:"warnings"`
}

// StepResult is what verification found for one layout step.
type StepResult struct {
	Name      string       `json:"name"`
	Threshold int          `json:"threshold"`
	Links     []LinkResult `json:"links"`
	Passed    bool         `json:"passed"`
	Failures  []string     `json:"failures,omitempty"`
	// Skipped is set when the step's task was skipped and its skip record
	// excuses the missing links: Tekton's reason and what it rests on.
	Skipped string `json:"skipped,omitempty"`
}

// LinkResult is one link file of a step.
type LinkResult struct {
	File  string `json:"file"`
	KeyID string `json:"keyid,omitempty"`
	// Valid: well-formed, signed by a key the layout authorizes for the
	// step, and the signature verifies.
	Valid bool `json:"valid"`
	// SkipRecord: the link is a skip record, not a link of a run.
	SkipRecord bool `json:"skipRecord,omitempty"`
}

type failureJSON struct {
	Category string `json:"category"`
	Step     string `json:"step,omitempty"`
	Message  string `json:"message"`
}

// MarshalJSON writes the verdict with its failures as objects.
func (v *Verdict) MarshalJSON() ([]byte, error) {
	type plain Verdict
	fs := make([]failureJSON, len(v.Failures))
	for i, f := range v.Failures {
		fs[i] = failureJSON{Category: category(f), Message: f.Error()}
		var s stepped
		if errors.As(f, &s) {
			fs[i].Step = s.stepName()
		}
	}
	steps, warnings := v.Steps, v.Warnings
	if steps == nil {
		steps = []StepResult{}
	}
	if warnings == nil {
		warnings = []string{}
	}
	return json.Marshal(struct {
		*plain
		Steps    []StepResult  `json:"steps"`
		Failures []failureJSON `json:"failures"`
		Warnings []string      `json:"warnings"`
	}{(*plain)(v), steps, fs, warnings})
}

// Layout verifies a software supply chain: the layout (an in-toto layout
// Metablock, as JSON), signed by owners, against the links in links. It
// returns the verdict, and an *Error holding every failure unless it passed.
// The steps, each a function below, in this order:
//
//  1. Parse the layout strictly and verify its signatures by the owner keys:
//     every owner key, or opts.LayoutThreshold distinct ones. If this fails,
//     only the expiry is still checked: nothing a forged layout says is
//     worth reporting.
//  2. Check the layout has not expired (at opts.Now).
//  3. Check the layout's content and compile its artifact rules. Refuse
//     (ErrUnsupported) inspections — stepseal never executes commands while
//     verifying — certificate authorities and constraints; refuse malformed
//     steps, keys and rules. Nothing else can be checked against a layout
//     that fails here.
//     3a. With opts.Steps, keep only the steps in scope (restrict): the
//     others are neither required nor read.
//  4. Load every link file, in parallel: parse it once, check its file name
//     names a layout step and its signed name is that step, that the key of
//     its file name signed it, that the layout authorizes that key for the
//     step, and that the signature verifies.
//     4a. Skip records (links the orchestrator signs for the steps of a
//     task Tekton skipped): well-formed, for a task the layout's readme
//     declares skippable (attest.SkipRule), signed by a key it lets sign
//     skip records; a link of a run signed by a key the step lists only
//     for skip records is refused.
//     4b. A valid link signed by a key the layout rotated out
//     (attest.KeyRotation) counts only if opts.Log proves the log the
//     rotation names held it below the tree size recorded then; a link
//     signed by a revoked key (attest.KeyRevocation) is refused in step 4.
//     5a. Excuse each skipped task whose skip records hold (checkSkips): no
//     link of a run, one record per step, a reason the layout allows whose
//     when expressions are false on the recorded inputs or whose cascade
//     parent was itself skipped.
//  5. Check each step's threshold of valid links from distinct keys (a step
//     excused in 5a needs none: its skip record stands in for its links).
//  6. Check all valid links of a step report the same materials and products.
//  7. Check all links come from one run: the same stepseal.dev/run-id, equal
//     to opts.RunID when set.
//     7a. Check each link's command succeeded (byproduct return-value 0),
//     unless the layout lets the step fail; a timed-out step always fails.
//  8. Apply each step's artifact rules (in parallel across steps), with
//     in-toto-golang's semantics, to its materials and products.
//  9. Compare each link's command with the step's expected command (a
//     warning only, as in in-toto).
//  10. Check each declared output artifact (opts.Artifacts) equals the
//     product of the last step that produced it.
//
// Every step runs as long as its inputs exist, so the verdict names every
// failure, not only the first.
func Layout(ctx context.Context, layout []byte, owners []signing.Verifier, links LinkSource, opts Options) (*Verdict, error) {
	if links == nil {
		return nil, errors.New("verify: no link source given")
	}
	if len(opts.Artifacts) == 0 && !opts.WithoutArtifactUnsafe {
		return nil, ErrNoArtifact
	}
	v := &verification{opts: opts, owners: owners, links: links, file: opts.LayoutName}
	if v.file == "" {
		v.file = "layout"
	}
	if v.opts.Now.IsZero() {
		v.opts.Now = time.Now()
	}
	authentic := v.verifyLayoutSignatures(ctx, layout) // 1
	if v.pl != nil {
		v.checkExpiry() // 2
	}
	if !authentic {
		return v.finish()
	}
	if !v.checkLayout() { // 3
		return v.finish()
	}
	if len(opts.Steps) > 0 && !v.restrict() { // 3a
		return nil, v.scopeErr
	}
	if err := v.loadLinks(ctx); err != nil { // 4
		if errors.Is(err, ErrVerification) { // the source refused the run's links (DuplicateLinkError)
			v.fail(err)
			return v.finish()
		}
		return nil, err
	}
	if err := v.checkRotatedKeys(ctx); err != nil { // 4b
		return nil, err
	}
	v.checkSkipKeys()      // 4a
	v.checkSkips()         // 5a
	v.checkThresholds()    // 5
	v.checkAgreement()     // 6
	v.checkRunBinding()    // 7
	v.checkOutcomes()      // 7a
	v.checkArtifactRules() // 8
	v.checkCommands()      // 9
	v.checkOutputs()       // 10
	return v.finish()
}

// ErrNoArtifact: Layout was called without an artifact to bind and without
// WithoutArtifactUnsafe. It is a caller's mistake, not a verdict.
var ErrNoArtifact = errors.New("verify: no artifact to bind the verdict to (Options.Artifacts); set WithoutArtifactUnsafe to verify without one")

// verification is the state of one call of Layout.
type verification struct {
	opts   Options
	owners []signing.Verifier
	links  LinkSource
	file   string

	pl    *parsedLayout
	cl    *checkedLayout
	files []*linkFile
	// valid are the valid links of each step, sorted by key ID; ref is the
	// first, the one artifact rules read (all must agree, step 6).
	valid map[string][]*linkFile
	ref   map[string]*parsedLink
	// runID is the run the links are checked against (step 7).
	runID string
	// excused maps each step of a skipped task whose skip record holds
	// to that record (step 5a); claimed holds every step of a task with
	// skip records, excused or not (its refusal is the failure to report).
	excused map[string]*linkFile
	claimed map[string]bool

	// outOfScope are the layout steps step 3a left out; scopeErr why it
	// could not restrict.
	outOfScope map[string]bool
	scopeErr   error

	failures []error
	warnings []string
}

// linkFile is one link file and what step 4 found.
type linkFile struct {
	Name  string
	Step  string // layout step its file name names, "" if none
	KeyID string // full key ID of the signature its file name names
	Link  *parsedLink
	Valid bool
	Errs  []error
	// Unreadable is set when the source could not be read (I/O, a store
	// that is down): no verdict can be given on it.
	Unreadable error
	// Digest is the link file's "sha256:<hex>", set for a valid link of a
	// rotated-out key (step 4b looks it up in the log).
	Digest string
}

func (v *verification) fail(errs ...error) { v.failures = append(v.failures, errs...) }
func (v *verification) warn(format string, args ...any) {
	v.warnings = append(v.warnings, fmt.Sprintf(format, args...))
}

// verifyLayoutSignatures is step 1. It reports whether the layout is
// authentic.
func (v *verification) verifyLayoutSignatures(ctx context.Context, data []byte) bool {
	if len(data) > MaxFileSize {
		v.fail(&MalformedError{File: v.file, Reason: ErrTooLarge.Error()})
		return false
	}
	pl, err := parseLayout(data, v.file)
	if err != nil {
		v.fail(err)
		return false
	}
	v.pl = pl
	if len(v.owners) == 0 {
		v.fail(&LayoutSignatureError{Layout: v.file, Reason: "no owner key given"})
		return false
	}
	// Owners are identified by key ID; the same key given twice counts once.
	owners := map[string]signing.Verifier{}
	var ids []string
	for _, o := range v.owners {
		id, err := o.KeyID()
		if err != nil {
			v.fail(&LayoutSignatureError{Layout: v.file, Reason: fmt.Sprintf("owner key: %v", err)})
			return false
		}
		if _, dup := owners[id]; !dup {
			ids = append(ids, id)
		}
		owners[id] = o
	}
	need := len(ids)
	if v.opts.LayoutThreshold > 0 {
		need = v.opts.LayoutThreshold
	}
	var good int
	var bad []error
	for _, id := range ids {
		if err := verifySig(ctx, owners[id], id, pl.Signatures, pl.Payload); err != "" {
			bad = append(bad, &LayoutSignatureError{Layout: v.file, KeyID: id, Reason: err})
			continue
		}
		good++
	}
	switch {
	case good >= need && v.opts.LayoutThreshold > 0:
		for _, b := range bad {
			v.warn("%v (threshold %d met by other owners)", b, need)
		}
		return true
	case good >= need:
		return true
	}
	v.fail(bad...)
	if v.opts.LayoutThreshold > 0 {
		v.fail(&LayoutSignatureError{Layout: v.file, Reason: fmt.Sprintf("%d of %d owner keys signed the layout validly, %d required", good, len(ids), need)})
	}
	return false
}

// verifySig checks the first signature by key id over payload, as
// in-toto-golang's Metablock.VerifySignature does; it returns why it failed.
func verifySig(ctx context.Context, key signing.Verifier, id string, sigs []signature, payload []byte) string {
	for _, s := range sigs {
		if s.KeyID != id {
			continue
		}
		raw, err := hex.DecodeString(s.Sig)
		if err != nil {
			return "signature is not hex"
		}
		if err := key.Verify(ctx, payload, raw); err != nil {
			return "signature does not verify: the signed content was changed after signing, or another key signed it"
		}
		return ""
	}
	return "no signature by this key"
}

// checkExpiry is step 2.
func (v *verification) checkExpiry() {
	exp, err := time.Parse(in_toto.ISO8601DateSchema, v.pl.Layout.Expires)
	if err != nil {
		return // step 3 reports the malformed date
	}
	if v.opts.Now.After(exp) {
		v.fail(&ExpiredError{Expires: v.pl.Layout.Expires, Now: v.opts.Now.UTC().Format(in_toto.ISO8601DateSchema)})
	}
}

// checkLayout is step 3. It reports whether verification can go on.
func (v *verification) checkLayout() bool {
	cl, errs := compile(v.pl, v.file)
	v.warnings = append(v.warnings, cl.Warnings...)
	if len(errs) > 0 {
		v.fail(errs...)
		return false
	}
	v.cl = cl
	return true
}

// loadLinks is step 4. Only failing to list the source is an error; every
// problem with one file is a failure of the verdict.
func (v *verification) loadLinks(ctx context.Context) error {
	names, err := v.links.LinkNames(ctx)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		// A retried task's failed attempts keep their links under
		// seal.AttemptLinkName: evidence, not part of the run the layout
		// verifies (in-toto-golang's link glob leaves them aside too).
		if _, _, _, earlier := seal.ParseAttemptLinkName(n); earlier {
			continue
		}
		if step, _, ok := seal.ParseLinkName(n); ok && v.outOfScope[step] {
			continue // step 3a
		}
		if strings.HasSuffix(n, ".link") {
			v.files = append(v.files, &linkFile{Name: n})
		}
	}
	work := make(chan *linkFile)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(v.files), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				v.loadLink(ctx, f)
			}
		}()
	}
	for _, f := range v.files {
		if ctx.Err() != nil {
			break
		}
		work <- f
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, f := range v.files {
		if f.Unreadable != nil {
			return f.Unreadable
		}
	}
	for _, f := range v.files {
		v.fail(f.Errs...)
	}
	return nil
}

// loadLink reads, parses and checks the signature of one link file.
func (v *verification) loadLink(ctx context.Context, f *linkFile) {
	bad := func(err error) { f.Errs = append(f.Errs, err) }
	step, short, ok := seal.ParseLinkName(f.Name)
	if _, known := v.cl.byName[step]; ok && known {
		f.Step = step
	}
	data, err := v.links.ReadLink(ctx, f.Name)
	if err != nil {
		if couldNotRead(err) {
			f.Unreadable = fmt.Errorf("%w: %s: %w", ErrLinkUnreadable, f.Name, err)
			return
		}
		bad(&MalformedError{File: f.Name, Reason: err.Error()})
		return
	}
	parse := parseLink
	if _, owned := v.links.(ownedSource); owned {
		parse = parseLinkOwned
	}
	l, err := parse(data)
	switch {
	case errors.Is(err, errSublayout):
		bad(&UnsupportedError{File: f.Name, Feature: "sublayout", Reason: "a link file holding a layout (sublayouts are not supported)"})
		return
	case errors.Is(err, errDSSE):
		bad(&UnsupportedError{File: f.Name, Feature: "DSSE envelope", Reason: "links must be in-toto Metablocks ({\"signed\":…,\"signatures\":[…]})"})
		return
	case errors.Is(err, errCertSignature):
		bad(&UnsupportedError{File: f.Name, Feature: "certificate signature", Reason: "links must be signed by keys the layout lists"})
		return
	case err != nil:
		bad(&MalformedError{File: f.Name, Reason: err.Error()})
		return
	}
	f.Link = l
	if f.Step == "" {
		bad(&UnknownStepError{File: f.Name, SignedName: l.Name, Reason: "its file name names no step of the layout (want <step>.<keyid[:8]>.link)"})
		return
	}
	if l.Name != f.Step {
		bad(&UnknownStepError{File: f.Name, SignedName: l.Name, Reason: fmt.Sprintf("signed for step %q, but its file name says step %q", l.Name, f.Step)})
		return
	}
	for _, s := range l.Signatures {
		if strings.HasPrefix(s.KeyID, short) {
			f.KeyID = s.KeyID
			break
		}
	}
	if f.KeyID == "" {
		bad(&SignatureError{Step: f.Step, File: f.Name, KeyID: short, Reason: "has no signature by the key its file name names"})
		return
	}
	if l.Skip != nil && v.cl.skipOf[f.Step] == nil {
		task, _, _ := run.SplitStepName(f.Step)
		bad(&SkipError{Task: task, Step: f.Step, File: f.Name, KeyID: f.KeyID,
			Reason: "the layout does not let this task be skipped (it has no when expressions and no task whose skip cascades to it)"})
		return
	}
	if r, revoked := v.cl.Revoked[f.KeyID]; revoked {
		bad(&RevokedKeyError{Step: f.Step, File: f.Name, KeyID: f.KeyID, Layout: v.file, Reason: r.Reason})
		return
	}
	st := &v.cl.Steps[v.cl.byName[f.Step]]
	authorized := false
	for _, id := range st.PubKeys {
		authorized = authorized || id == f.KeyID
	}
	key := v.cl.Keys[f.KeyID]
	switch {
	case !authorized:
		bad(&UnauthorizedError{Step: f.Step, File: f.Name, KeyID: f.KeyID})
	case key == nil:
		bad(&SignatureError{Step: f.Step, File: f.Name, KeyID: f.KeyID, Reason: "the layout does not define this key"})
	default:
		if why := verifySig(ctx, key, f.KeyID, l.Signatures, l.Payload); why != "" {
			bad(&SignatureError{Step: f.Step, File: f.Name, KeyID: f.KeyID, Reason: why})
		} else {
			f.Valid = true
			if _, rotated := v.cl.Rotated[f.KeyID]; rotated {
				f.Digest = store.Digest(data)
			}
		}
	}
	l.releasePayload() // verified; reuse the canonical copy's buffer
}

// checkRotatedKeys is step 4b: a valid link signed by a key the layout
// rotated out counts only if the log the rotation names held it below the
// tree size recorded at the rotation (Options.Log proves it); otherwise it
// is refused and no longer valid. A log that cannot be read gives no
// verdict (ErrLogUnreadable).
func (v *verification) checkRotatedKeys(ctx context.Context) error {
	for _, f := range v.files {
		if !f.Valid || f.Digest == "" {
			continue
		}
		r := v.cl.Rotated[f.KeyID]
		e := &RotatedKeyError{Step: f.Step, File: f.Name, KeyID: f.KeyID, Layout: v.file, LogSize: r.Log.Size, Log: r.Log.Origin()}
		if v.opts.Log == nil {
			e.Reason = "no log evidence was given to show it was logged before the rotation (verify --log DIR --log-key PUB)"
			e.cause = reject.ErrMissing
		} else if i, err := v.opts.Log.Logged(ctx, r.Log, f.Digest); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, reject.ErrUnableToCheck) {
				return fmt.Errorf("%w: step %q link %s (rotated-out key %s): %w", ErrLogUnreadable, f.Step, f.Name, short(f.KeyID), err)
			}
			e.Reason, e.cause = err.Error(), err
		} else {
			v.warn("step %q: link %s is signed by in-toto key %s, rotated out at log size %d; the log held it at index %d, before the rotation", f.Step, f.Name, short(f.KeyID), r.Log.Size, i)
			continue
		}
		f.Valid = false
		v.fail(e)
	}
	return nil
}

// ErrLogUnreadable: the transparency log given as evidence for a
// rotated-out key's links could not be read; no verdict is given
// (reject.ErrUnavailable).
var ErrLogUnreadable = reject.Sentinel(reject.ErrUnavailable, "log evidence could not be read")

// ErrLinkUnreadable: a link file the source lists could not be read (I/O,
// a store that is down); no verdict is given (reject.ErrUnavailable).
var ErrLinkUnreadable = reject.Sentinel(reject.ErrUnavailable, "link could not be read")

// couldNotRead reports whether a link source's read error says the link
// could not be read (I/O, a store that is down) rather than that what was
// read is unacceptable: the former is no verdict ("unable to check"), the
// latter fails the link.
func couldNotRead(err error) bool {
	if errors.Is(err, reject.ErrRefused) || errors.Is(err, ErrTooLarge) {
		return false
	}
	var pe *fs.PathError
	return errors.Is(err, reject.ErrUnableToCheck) || errors.As(err, &pe)
}

// checkThresholds is step 5.
func (v *verification) checkThresholds() {
	v.valid = map[string][]*linkFile{}
	count := map[string]int{}
	for _, f := range v.files {
		if f.Step == "" {
			continue
		}
		if f.isSkip() {
			continue // step 5a
		}
		count[f.Step]++
		if f.Valid {
			v.valid[f.Step] = append(v.valid[f.Step], f)
		}
	}
	v.ref = map[string]*parsedLink{}
	for _, st := range v.cl.Steps {
		valid := v.valid[st.Name]
		sort.Slice(valid, func(i, j int) bool { return valid[i].KeyID < valid[j].KeyID })
		if len(valid) > 0 {
			v.ref[st.Name] = valid[0].Link
		}
		if rec := v.excused[st.Name]; rec != nil {
			v.ref[st.Name] = rec.Link
			continue
		}
		switch {
		case v.claimed[st.Name] && len(valid) == 0:
			// A refused skip record: step 5a said why.
		case count[st.Name] == 0:
			v.fail(&MissingStepError{Step: st.Name, Keys: st.PubKeys})
		case len(valid) < st.Threshold:
			ids := make([]string, len(valid))
			for i, f := range valid {
				ids[i] = f.KeyID
			}
			v.fail(&ThresholdError{Step: st.Name, Threshold: st.Threshold, Valid: ids, Links: count[st.Name]})
		}
	}
}

// checkAgreement is step 6.
func (v *verification) checkAgreement() {
	for _, st := range v.cl.Steps {
		valid := v.valid[st.Name]
		for _, f := range valid[min(1, len(valid)):] {
			for _, kind := range []string{"materials", "products"} {
				a, b := &valid[0].Link.Materials, &f.Link.Materials
				if kind == "products" {
					a, b = &valid[0].Link.Products, &f.Link.Products
				}
				if name, differ := firstDifference(a, b); differ {
					v.fail(&DisagreementError{Step: st.Name, File: valid[0].Name, Other: f.Name, Kind: kind, Artifact: name})
				}
			}
		}
	}
}

// firstDifference compares two artifact lists as reflect.DeepEqual compares
// in-toto-golang's maps (null differs from {}), naming the first artifact
// that differs.
func firstDifference(a, b *artifacts) (string, bool) {
	if a.null != b.null {
		return "(null vs. empty)", true
	}
	for i := 0; i < len(a.raw) || i < len(b.raw); i++ {
		switch {
		case i == len(a.raw):
			return b.raw[i].name, true
		case i == len(b.raw):
			return a.raw[i].name, true
		case a.raw[i].name != b.raw[i].name:
			return min(a.raw[i].name, b.raw[i].name), true
		case a.raw[i].digest != b.raw[i].digest:
			return a.raw[i].name, true
		}
	}
	return "", false
}

// checkRunBinding is step 7: links replayed from another run are rejected.
func (v *verification) checkRunBinding() {
	var links []*linkFile
	for _, st := range v.cl.Steps {
		links = append(links, v.valid[st.Name]...)
		if rec := v.excused[st.Name]; rec != nil {
			links = append(links, rec)
		}
	}
	want := v.opts.RunID
	v.runID = want
	if want == "" {
		// The run most links name (first in layout order on a tie) is the
		// reference; links naming no run count as naming "".
		votes := map[string]int{}
		for _, f := range links {
			votes[f.Link.RunID]++
		}
		best := -1
		for _, f := range links {
			if votes[f.Link.RunID] > best {
				want, best = f.Link.RunID, votes[f.Link.RunID]
			}
		}
		v.runID = want
		if len(votes) <= 1 && want == "" && len(links) > 0 {
			v.warn("no link carries a stepseal.dev/run-id: links replayed from another run cannot be detected")
			return
		}
	}
	for _, f := range links {
		if f.Link.RunID != want || !f.Link.HasRunID {
			v.fail(&RunMismatchError{Step: f.Step, File: f.Name, Got: f.Link.RunID, Want: want})
		}
	}
}

// checkOutcomes is step 7a: a link whose command failed fails the step,
// unless the layout lets the step fail; a timeout fails it even then. A
// link of no command (in-toto-record, in-toto-run --no-command) has no
// outcome to check.
func (v *verification) checkOutcomes() {
	for _, st := range v.cl.Steps {
		for _, f := range v.valid[st.Name] {
			l, r := f.Link, f.Link.Result
			switch {
			case len(l.Command) == 0 && !r.Has:
			case r.TimedOut:
				v.fail(&StepFailedError{Step: st.Name, File: f.Name, KeyID: f.KeyID, ReturnValue: r.Value, TimedOut: true, MayFail: st.MayFail})
			case !r.Has:
				v.fail(&NoReturnValueError{Step: st.Name, File: f.Name, KeyID: f.KeyID})
			case !r.Int:
				v.fail(&NoReturnValueError{Step: st.Name, File: f.Name, KeyID: f.KeyID, Raw: r.Raw})
			case r.Value != 0 && !st.MayFail:
				v.fail(&StepFailedError{Step: st.Name, File: f.Name, KeyID: f.KeyID, ReturnValue: r.Value})
			case r.Value != 0:
				v.warn("step %q: link %s records return-value %d; the layout lets this step fail (onError: continue)", st.Name, f.Name, r.Value)
			}
		}
	}
}

// checkArtifactRules is step 8.
func (v *verification) checkArtifactRules() {
	steps := v.cl.Steps
	errs := make([][]error, len(steps))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range steps {
		l := v.ref[steps[i].Name]
		if l == nil {
			continue // no valid link: step 5 reported it
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			e := &ruleEval{step: steps[i].Name, links: v.ref}
			errs[i] = e.artifactRules(&steps[i], l)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		v.fail(e...)
	}
}

// checkCommands is step 9.
func (v *verification) checkCommands() {
	for _, st := range v.cl.Steps {
		want := strings.Join(st.ExpectedCommand, " ")
		for _, f := range v.valid[st.Name] {
			if got := strings.Join(f.Link.Command, " "); got != want {
				v.warn("step %q: link %s reports command %q, the layout expects %q", st.Name, f.Name, got, want)
			}
		}
	}
}

// checkOutputs is step 10.
func (v *verification) checkOutputs() {
	if len(v.opts.Artifacts) == 0 {
		v.warn("no artifact bound: the verdict does not say that any artifact is what the last step that listed it produced")
		return
	}
	uris := make([]string, 0, len(v.opts.Artifacts))
	for u := range v.opts.Artifacts {
		uris = append(uris, u)
	}
	sort.Strings(uris)
	for _, uri := range uris {
		want := v.opts.Artifacts[uri]
		step, got := "", ""
		for i := len(v.cl.Steps) - 1; i >= 0 && step == ""; i-- {
			name := v.cl.Steps[i].Name
			if l := v.ref[name]; l != nil {
				if j := l.Products.find(path.Clean(uri)); j >= 0 {
					step, got = name, l.Products.clean[j].digest.String()
				}
			}
		}
		if step == "" {
			v.fail(&OutputArtifactError{Artifact: uri, Reason: "no step with a valid link lists it among its products"})
			continue
		}
		if why := outputMismatch(want, got); why != "" {
			v.fail(&OutputArtifactError{Artifact: uri, Step: step, Reason: why})
		}
	}
}

// outputMismatch compares a declared digest set with a product's: every
// algorithm both name must agree, and they must share at least one.
func outputMismatch(want run.DigestSet, gotCanon string) string {
	var got map[string]string
	if err := json.Unmarshal([]byte(gotCanon), &got); err != nil {
		return "unreadable digest set"
	}
	common := 0
	var diff []string
	for alg, d := range want {
		g, ok := got[alg]
		if !ok {
			continue
		}
		common++
		if !strings.EqualFold(g, d) {
			diff = append(diff, fmt.Sprintf("%s %s, declared %s", alg, g, d))
		}
	}
	sort.Strings(diff)
	switch {
	case len(diff) > 0:
		return "digest differs: product has " + strings.Join(diff, "; ")
	case common == 0:
		return "the declared digests and the product's share no algorithm"
	}
	return ""
}

// finish builds the per-step results and the returned error.
func (v *verification) finish() (*Verdict, error) {
	verdict := &Verdict{Passed: len(v.failures) == 0, RunID: v.runID, Scope: v.opts.Steps, Failures: v.failures, Warnings: v.warnings}
	if v.cl != nil {
		byStep := map[string][]string{}
		for _, f := range v.failures {
			var s stepped
			if errors.As(f, &s) && s.stepName() != "" {
				byStep[s.stepName()] = append(byStep[s.stepName()], f.Error())
			}
		}
		links := map[string][]LinkResult{}
		for _, f := range v.files {
			if f.Step != "" {
				links[f.Step] = append(links[f.Step], LinkResult{File: f.Name, KeyID: f.KeyID, Valid: f.Valid, SkipRecord: f.isSkip()})
			}
		}
		for _, st := range v.cl.Steps {
			sr := StepResult{
				Name: st.Name, Threshold: st.Threshold, Links: links[st.Name],
				Passed: len(byStep[st.Name]) == 0 && len(v.valid[st.Name]) >= st.Threshold, Failures: byStep[st.Name],
			}
			if rec := v.excused[st.Name]; rec != nil {
				sr.Skipped = describeSkip(rec.Link.Skip)
				sr.Passed = len(byStep[st.Name]) == 0
			}
			verdict.Steps = append(verdict.Steps, sr)
		}
	}
	if verdict.Passed {
		return verdict, nil
	}
	return verdict, &Error{Failures: v.failures}
}
