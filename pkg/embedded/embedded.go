package embedded

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/verify"
)

// BuilderID identifies the local runner as the build platform in provenance.
const BuilderID = "https://stepseal.dev/localrun/v1"

// Names of the non-functionary keys of a run.
const (
	OwnerKey     = "owner"     // signs the layout and the platform policy
	PublisherKey = "publisher" // signs provenance and the published output
)

// Options configure one run.
type Options struct {
	// Tekton loads, lays out and runs the Pipeline (tektonrun.Tekton);
	// required.
	Tekton Tekton
	// Path is an example directory (pipeline.yaml, tasks/,
	// functionaries.yaml, platform-policy.yaml) or a Pipeline, PipelineRun
	// or TaskRun file (functionaries.yaml beside it).
	Path string
	// Out is the output directory: new, empty, or the leftover of a killed
	// run; any other is refused unless Force.
	Out   string
	Force bool
	// KeysDir holds owner.key, publisher.key and <functionary>.key; empty:
	// throwaway keys are made in Out/keys.
	KeysDir string
	// TasksDir, Functionaries and PlatformPolicy override the files found
	// next to the pipeline.
	TasksDir, Functionaries, PlatformPolicy string
	// Params are the pipeline's parameters; with a run file they override
	// and extend the run's params.
	Params map[string]string
	// Exclude are gitignore-style patterns of workspace paths not recorded.
	Exclude []string
	// Quiet does not stream step output to Progress.
	Quiet bool
	// Progress receives progress lines and step output; nil discards them.
	Progress io.Writer
	// OnVerdict is called as soon as the verdict is known, before
	// publishing, with the run's own error (nil if it succeeded).
	OnVerdict func(v *verify.Verdict, runErr error)
	// Trusted, when set, returns the layout of the named pipeline the run
	// is verified against instead of the one it generates (which is still
	// written to Out): the layout as its owners released it, with their
	// keys and threshold (from TUF: pkg/trustroot). It is called once the
	// pipeline is loaded and before anything runs, so a layout the trust
	// root does not vouch for stops the run before it starts.
	Trusted func(ctx context.Context, pipeline string) (*TrustedLayout, error)
}

// TrustedLayout is a layout from the trust root and who owns it.
type TrustedLayout struct {
	Data      []byte
	Owners    []signing.Verifier
	Threshold int
	// Name names it in messages (a TUF target and its role).
	Name string
}

// Published says where a run published its output.
type Published struct {
	Registry   string   `json:"registry"`
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	Platforms  []string `json:"platforms"`
	Policy     string   `json:"policy"`
	Verified   bool     `json:"verified"`
	Recipients []string `json:"recipients"`
}

// Report is what one run did. RunErr, VerifyErr and PublishErr are its
// outcome: a Report with none of them passed.
type Report struct {
	RunID    string   `json:"runID"`
	Pipeline string   `json:"pipeline"`
	Out      string   `json:"out"`
	Layout   string   `json:"layout"`
	Links    []string `json:"links"`
	// AttemptLinks are the links of retried tasks' failed attempts
	// (seal.AttemptLinkName): stored in the log and named in the
	// provenance with the others, left aside by verification.
	AttemptLinks []string        `json:"attemptLinks,omitempty"`
	Provenance   string          `json:"provenance,omitempty"`
	Output       string          `json:"output,omitempty"`
	RunError     string          `json:"runError,omitempty"`
	Verdict      *verify.Verdict `json:"verdict,omitempty"`
	Published    *Published      `json:"published,omitempty"`
	Log          *LogReport      `json:"log,omitempty"`

	// OutputName is the declared output (workspace/path), if any.
	OutputName string `json:"-"`
	RunErr     error  `json:"-"`
	VerifyErr  error  `json:"-"`
	PublishErr error  `json:"-"`
}

// Passed reports whether the run, its verification and publishing passed.
func (r *Report) Passed() bool { return r.RunErr == nil && r.VerifyErr == nil && r.PublishErr == nil }

// inputs are the checked inputs of a run (step 1).
type inputs struct {
	pipelinePath, tasksDir, functionariesPath, policyPath string
	pipeline                                              Pipeline
	functionaries                                         *layout.Functionaries
	declared                                              map[string]in_toto.Key
}

// runner is one run in progress.
type runner struct {
	opts    Options
	trusted *TrustedLayout
	w       io.Writer
	in      *inputs
	keys    map[string]crypto.Signer
	signers map[string]signing.Signer
	pubKeys map[string]in_toto.Key
	runID   string
	linkDir string
	pol     *policy.Policy
	platKey map[string]crypto.PrivateKey
	report  *Report
	rec     *run.Record
	outputs map[string]run.DigestSet
	prov    *store.Entry
}

// Run is `stepseal run`:
//
//  1. load the Pipeline and Tasks with Tekton's own types (strict) and the
//     functionaries file — every input error before Out is touched;
//  2. prepare Out (marked incomplete while written) and load or make the
//     owner, publisher and functionary keys;
//  3. generate the layout from the Pipeline and sign it with the owner key
//     (Out/root.layout), and sign the platform policy if there is one;
//  4. execute the Pipeline on this host, a signed link per step
//     (Out/links);
//  5. seal: store layout and links in the run's transparency log, write
//     and store the provenance, and prove every entry included;
//  6. verify everything against the layout, bound to this run and its
//     declared output (Out/verification.json);
//  7. publish a verified output encrypted to the policy's platforms and
//     pull it back as one;
//  8. report: the Report's RunErr, VerifyErr and PublishErr are the verdict.
//
// The error is nil when the run got as far as a verdict; then the Report
// says whether it passed. Interrupted (ctx done), Run removes the partial
// output.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	r := &runner{opts: opts, w: opts.Progress}
	if r.w == nil {
		r.w = io.Discard
	}
	if opts.Out == "" {
		return nil, fmt.Errorf("--out is required")
	}
	if opts.Tekton == nil {
		return nil, errors.New("embedded: Options.Tekton is required")
	}
	if r.in, err = load(ctx, opts); err != nil { // 1
		return nil, err
	}
	for _, n := range r.in.pipeline.Notes() {
		fmt.Fprintln(r.w, n)
	}
	if opts.Trusted != nil {
		if r.trusted, err = opts.Trusted(ctx, r.in.pipeline.Name()); err != nil {
			return nil, err
		}
	}
	out, err := prepareOut(r.w, opts.Out, opts.Force) // 2
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		switch {
		case ctx.Err() != nil:
			// Interrupted: a half-written output is worth nothing; remove
			// it (the marker covers a kill that leaves no time for this).
			out.remove()
			rep, err = nil, fmt.Errorf("removed the partial output %s: %w", opts.Out, ctx.Err())
		case err != nil && !started:
			out.remove()
		default:
			out.done()
		}
	}()
	if err := r.loadKeys(); err != nil { // 2
		return nil, err
	}
	if err := r.signLayout(ctx); err != nil { // 3
		return nil, err
	}
	if err := r.preparePolicy(ctx); err != nil { // 3
		return nil, err
	}
	started = true
	if err := r.execute(ctx); err != nil { // 4
		if errors.Is(err, errInvalidRun) {
			started = false // bad input rejected before any step ran: leave nothing behind
			return nil, r.report.RunErr
		}
		return nil, err
	}
	st, err := openLog(ctx, opts.Out)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := st.Close(context.WithoutCancel(ctx)); err == nil {
			err = cerr
		}
	}()
	if err := r.seal(ctx, st); err != nil { // 5
		return nil, err
	}
	if err := r.verify(ctx); err != nil { // 6
		return nil, err
	}
	if err := r.publish(ctx); err != nil { // 7
		return nil, err
	}
	return r.report, nil // 8
}

// load is step 1.
func load(ctx context.Context, o Options) (*inputs, error) {
	in := &inputs{}
	st, err := os.Stat(o.Path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(o.Path)
	in.pipelinePath = o.Path
	if st.IsDir() {
		dir = o.Path
		in.pipelinePath = filepath.Join(o.Path, "pipeline.yaml")
	}
	in.tasksDir = o.TasksDir
	if in.tasksDir == "" {
		if st, err := os.Stat(filepath.Join(dir, "tasks")); err == nil && st.IsDir() {
			in.tasksDir = filepath.Join(dir, "tasks")
		}
	}
	in.functionariesPath = o.Functionaries
	if in.functionariesPath == "" {
		in.functionariesPath = filepath.Join(dir, "functionaries.yaml")
	}
	in.policyPath = o.PlatformPolicy
	if in.policyPath == "" {
		if _, err := os.Stat(filepath.Join(dir, "platform-policy.yaml")); err == nil {
			in.policyPath = filepath.Join(dir, "platform-policy.yaml")
		}
	}
	if in.pipeline, err = o.Tekton.Load(ctx, in.pipelinePath, in.tasksDir); err != nil {
		return nil, err
	}
	if in.functionaries, err = layout.LoadFunctionaries(in.functionariesPath); err != nil {
		return nil, err
	}
	for _, n := range in.functionaries.Names() {
		if n == OwnerKey || n == PublisherKey {
			return nil, fmt.Errorf("%s: functionary name %q is reserved for the layout owner / build platform key", in.functionariesPath, n)
		}
	}
	if in.declared, err = in.functionaries.PublicKeys(); err != nil {
		return nil, err
	}
	if o.KeysDir == "" && len(in.declared) > 0 {
		return nil, fmt.Errorf("%s declares public keys for %s: pass --keys DIR with their private keys", in.functionariesPath, strings.Join(sortedNames(in.declared), ", "))
	}
	return in, nil
}

// loadKeys is step 2: the private key of every functionary plus the owner
// and the publisher. With KeysDir they are read from there (only public
// keys are copied to Out/keys); otherwise throwaway ed25519 keys are
// written to Out/keys (private keys 0600). A key that does not match the
// public key the functionaries file declares is refused.
func (r *runner) loadKeys() error {
	keysDir := filepath.Join(r.opts.Out, "keys")
	names := append([]string{OwnerKey, PublisherKey}, r.in.functionaries.Names()...)
	r.keys = map[string]crypto.Signer{}
	if r.opts.KeysDir == "" {
		fmt.Fprintf(r.w, "no --keys given: making throwaway ed25519 keys in %s (%s)\n", keysDir, strings.Join(names, ", "))
	}
	for _, n := range names {
		if r.opts.KeysDir != "" {
			k, err := signing.LoadPrivateKey(filepath.Join(r.opts.KeysDir, n+".key"), signing.EnvOrPrompt)
			if err != nil {
				return err
			}
			pub, err := signing.MarshalPublicKeyPEM(k.Public())
			if err != nil {
				return err
			}
			if err := os.MkdirAll(keysDir, 0o755); err != nil {
				return err
			}
			if err := signing.WriteFileAtomic(filepath.Join(keysDir, n+".pub"), pub, 0o644); err != nil {
				return err
			}
			r.keys[n] = k
			continue
		}
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			return err
		}
		if _, _, err := signing.WriteKeyPair(keysDir, n, k, nil); err != nil {
			return err
		}
		r.keys[n] = k
	}
	r.signers = map[string]signing.Signer{}
	r.pubKeys = map[string]in_toto.Key{}
	for n, k := range r.keys {
		s, err := signing.NewSigner(k)
		if err != nil {
			return err
		}
		r.signers[n] = s
		ik, err := signing.InTotoKey(s.Public())
		if err != nil {
			return err
		}
		if d, ok := r.in.declared[n]; ok && d.KeyID != ik.KeyID {
			return fmt.Errorf("key %s/%s.key (key id %.8s) does not match the public key %s declares for %s (%.8s)", r.opts.KeysDir, n, ik.KeyID, r.in.functionariesPath, n, d.KeyID)
		}
		if n != OwnerKey && n != PublisherKey {
			r.pubKeys[n] = ik
		}
	}
	return nil
}

// signLayout is step 3: the layout generated from the Pipeline, signed by
// the owner.
func (r *runner) signLayout(ctx context.Context) error {
	// The build platform key orchestrates the run: it signs the skip
	// records of the tasks Tekton skips.
	skipKey, err := signing.InTotoKey(r.signers[PublisherKey].Public())
	if err != nil {
		return err
	}
	// The run's ID is chosen now, so the layout's expected commands are
	// the ones this run's links will record.
	r.runID = newRunID()
	l, err := r.in.pipeline.Layout(r.in.functionaries, r.pubKeys, layout.Options{SkipKey: &skipKey, Params: r.opts.Params, RunID: r.runID})
	if err != nil {
		return err
	}
	mb, err := layout.Sign(ctx, *l, r.signers[OwnerKey])
	if err != nil {
		return err
	}
	return layout.Write(filepath.Join(r.opts.Out, seal.LayoutName), mb)
}

// preparePolicy is step 3's second half: the platform policy is signed
// before the run, so a bad policy stops it before anything runs.
func (r *runner) preparePolicy(ctx context.Context) error {
	if r.in.policyPath == "" || r.in.functionaries.Spec.Output == "" {
		return nil
	}
	rp, err := publish.PrepareRunPolicy(ctx, r.in.policyPath, r.opts.Out, r.signers[OwnerKey])
	if err != nil {
		return err
	}
	if len(rp.Made) > 0 {
		fmt.Fprintf(r.w, "making throwaway platform keys in %s (%s)\n", rp.KeyDir, strings.Join(rp.Made, ", "))
	}
	r.pol, r.platKey = rp.Policy, rp.PlatformKeys
	return nil
}

// errInvalidRun: the runner refused the Pipeline before any step ran.
var errInvalidRun = errors.New("invalid run")

// execute is step 4.
func (r *runner) execute(ctx context.Context) error {
	if r.runID == "" {
		r.runID = newRunID()
	}
	r.linkDir = filepath.Join(r.opts.Out, "links")
	if err := os.MkdirAll(r.linkDir, 0o755); err != nil {
		return err
	}
	f := r.in.functionaries
	stepSigners := func(step string) ([]signing.Signer, error) {
		names, _, err := f.For(step)
		if err != nil {
			return nil, err
		}
		out := make([]signing.Signer, 0, len(names))
		for _, n := range names {
			out = append(out, r.signers[n])
		}
		return out, nil
	}
	fmt.Fprintf(r.w, "stepseal run %s: pipeline %s, run %s\n", r.opts.Path, r.in.pipeline.Name(), r.runID)
	rec, runErr := r.in.pipeline.Run(ctx, RunOptions{
		Params:            r.opts.Params,
		WorkDir:           filepath.Join(r.opts.Out, "work"),
		LinkDir:           r.linkDir,
		Signers:           stepSigners,
		SkipSigner:        r.signers[PublisherKey],
		Exclude:           r.opts.Exclude,
		Out:               r.w,
		Quiet:             r.opts.Quiet,
		RunID:             r.runID,
		DefaultWorkingDir: filepath.Dir(r.in.pipelinePath),
	})
	r.rec = rec
	r.report = &Report{RunID: r.runID, Pipeline: r.in.pipeline.Name(), Out: r.opts.Out,
		Layout: filepath.Join(r.opts.Out, seal.LayoutName), OutputName: f.Spec.Output, RunErr: runErr}
	links, attempts, err := linkNames(r.linkDir)
	if err != nil {
		return err
	}
	r.report.Links, r.report.AttemptLinks = links, attempts
	if runErr != nil && errors.Is(runErr, ErrInvalidRun) && len(links) == 0 {
		return errInvalidRun
	}
	if runErr != nil {
		r.report.RunError = strings.Join(strings.Fields(runErr.Error()), " ")
		fmt.Fprintf(r.w, "pipeline run failed: %s\n", r.report.RunError)
	}
	return nil
}

// seal is step 5: layout and links go to the run's transparency log; if
// the run succeeded, its provenance (about the declared output, else the
// last step's products, else the links) is written and stored after them;
// then every entry of the run is proven included with the public key alone.
func (r *runner) seal(ctx context.Context, st *tlogstore.Store) error {
	targets := []seal.Target{{Name: "log", Store: st}}
	layoutData, err := os.ReadFile(r.report.Layout)
	if err != nil {
		return err
	}
	entries := []store.Entry{{Kind: store.KindLayout, Name: seal.LayoutName, RunID: r.runID, Data: layoutData}}
	for _, n := range r.report.Links {
		data, err := os.ReadFile(filepath.Join(r.linkDir, n))
		if err != nil {
			return err
		}
		e, err := seal.LinkEntry(r.rec, n, data)
		if err != nil {
			return err
		}
		e.RunID = r.runID
		entries = append(entries, e)
	}
	for _, n := range r.report.AttemptLinks {
		data, err := os.ReadFile(filepath.Join(r.linkDir, n))
		if err != nil {
			return err
		}
		e, err := seal.AttemptLinkEntry(r.runID, n, data)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	if _, err := seal.Put(ctx, targets, entries); err != nil {
		return err
	}
	if r.report.RunErr == nil {
		prov, err := r.provenance(ctx, seal.Digests(entries[1:]))
		if err != nil {
			return err
		}
		if _, err := seal.Put(ctx, targets, []store.Entry{prov}); err != nil {
			return err
		}
		r.prov = &prov
	}
	r.report.Log, err = proveLog(ctx, r.w, r.opts.Out, st, r.runID)
	return err
}

// provenance writes Out/provenance.json, signed by the publisher, and
// returns its store entry.
func (r *runner) provenance(ctx context.Context, links run.Artifacts) (store.Entry, error) {
	if out := r.in.functionaries.Spec.Output; out != "" {
		ws, rel, _ := strings.Cut(out, "/")
		file := filepath.Join(r.opts.Out, "work", filepath.FromSlash(r.in.pipeline.WorkspaceDir(ws)), filepath.FromSlash(rel))
		d, err := artifact.FileSHA256(file)
		if err != nil {
			return store.Entry{}, fmt.Errorf("declared output %s: %w", out, err)
		}
		r.outputs = map[string]run.DigestSet{out: {"sha256": d}}
		r.report.Output = file
	}
	defs := run.Artifacts{}
	for _, p := range r.in.pipeline.Sources() {
		d, err := artifact.FileSHA256(p)
		if err != nil {
			return store.Entry{}, err
		}
		defs[filepath.ToSlash(p)] = run.DigestSet{"sha256": d}
	}
	subjects := run.Artifacts{}
	for k, v := range r.outputs {
		subjects[k] = v
	}
	opts := attest.ProvenanceOptions{Subjects: subjects, LinkSubjects: true, BuilderID: BuilderID, Definitions: defs, Links: links}
	subj, covers, err := attest.Subjects(r.rec, opts)
	if err != nil {
		return store.Entry{}, err
	}
	switch covers {
	case attest.CoversOutput:
		fmt.Fprintf(r.w, "provenance: about the declared output %s\n", strings.Join(subj.Names(), ", "))
	case attest.CoversLastStepProducts:
		fmt.Fprintf(r.w, "provenance: no output declared; about the %d product(s) of the last step\n", len(subj))
	case attest.CoversLinks:
		fmt.Fprintf(r.w, "provenance: no output declared and the last step produced no file; about the run's %d signed link(s), which are all it produced\n", len(subj))
	}
	stmt, err := attest.Provenance(r.rec, opts)
	if err != nil {
		return store.Entry{}, err
	}
	e, err := seal.Provenance(ctx, stmt, seal.LocalProvenanceName, r.runID, r.signers[PublisherKey], seal.Previous{}, true)
	if err != nil {
		return store.Entry{}, err
	}
	path := filepath.Join(r.opts.Out, seal.LocalProvenanceName)
	if err := signing.WriteFileAtomic(path, append(append([]byte{}, e.Data...), '\n'), 0o644); err != nil {
		return store.Entry{}, err
	}
	r.report.Provenance = path
	return e, nil
}

// verify is step 6. A verdict that could not be reached is an error; one
// that failed is the Report's VerifyErr.
func (r *runner) verify(ctx context.Context) error {
	name, threshold := r.report.Layout, 0
	var data []byte
	var owners []signing.Verifier
	if t := r.trusted; t != nil {
		// The released layout, not the one just generated from the files.
		data, owners, threshold, name = t.Data, t.Owners, t.Threshold, t.Name
	} else {
		var err error
		if data, err = verify.ReadFile(r.report.Layout); err != nil {
			return err
		}
		owner, err := signing.NewVerifier(r.signers[OwnerKey].Public())
		if err != nil {
			return err
		}
		owners = []signing.Verifier{owner}
	}
	fmt.Fprintf(r.w, "verifying %s against %d link(s)\n", name, len(r.report.Links))
	v, verr := verify.Layout(ctx, data, owners, verify.Dir(r.linkDir), verify.Options{
		RunID: r.runID, Artifacts: r.outputs, WithoutArtifactUnsafe: len(r.outputs) == 0, LayoutName: name, LayoutThreshold: threshold,
	})
	if v == nil {
		return verr
	}
	r.report.Verdict, r.report.VerifyErr = v, verr
	vj, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := signing.WriteFileAtomic(filepath.Join(r.opts.Out, "verification.json"), append(vj, '\n'), 0o644); err != nil {
		return err
	}
	if r.opts.OnVerdict != nil {
		r.opts.OnVerdict(v, r.report.RunErr)
	}
	return nil
}

// publish is step 7: only an output that verified is published, to an
// in-process registry, encrypted to exactly the platforms the policy names,
// signed and attested by the publisher, then pulled back as a platform.
func (r *runner) publish(ctx context.Context) error {
	if r.report.VerifyErr != nil || r.report.RunErr != nil || r.pol == nil {
		return nil
	}
	prov, err := seal.Envelope(*r.prov)
	if err != nil {
		return err
	}
	res, perr := publish.PublishRunOutput(ctx, publish.RunOutput{
		Policy: r.pol, PlatformKeys: r.platKey, Pipeline: r.in.pipeline.Name(), RunID: r.runID,
		File: r.report.Output, Provenance: prov, Publisher: r.keys[PublisherKey],
	})
	r.report.PublishErr = perr
	if res == nil {
		return nil
	}
	p := &Published{
		Registry: res.Registry + " (in-process, gone when stepseal exits)", Ref: res.Ref.String(), Digest: res.Digest.String(),
		Platforms: res.Platforms, Policy: fmt.Sprintf("%s v%d", r.pol.Name, r.pol.Version), Verified: res.Verified,
	}
	for _, rc := range res.Recipients {
		p.Recipients = append(p.Recipients, fmt.Sprintf("layer %d: %s", rc.Layer, rc))
	}
	r.report.Published = p
	fmt.Fprintf(r.w, "published %s\n  %s\n  encrypted to %v per policy %s (signed by the owner), signed and attested (SLSA provenance)\n", p.Ref, p.Digest, p.Platforms, p.Policy)
	switch {
	case perr != nil, len(p.Platforms) == 0:
	case res.PulledBackAs == "":
		fmt.Fprintf(r.w, "  (no private key of platform %s here: not pulling it back)\n", p.Platforms[0])
	default:
		fmt.Fprintf(r.w, "  pulled back as platform %s: signature verified, recipients = policy, decrypted, sha256 matches the verified output\n", res.PulledBackAs)
	}
	return nil
}

func newRunID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "local-" + hex.EncodeToString(b)
}

func sortedNames(m map[string]in_toto.Key) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// linkNames returns the link file names of dir and, apart, those of failed
// attempts (seal.AttemptLinkName), each sorted.
func linkNames(dir string) (links, attempts []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if _, _, _, ok := seal.ParseAttemptLinkName(e.Name()); ok {
			attempts = append(attempts, e.Name())
		} else if _, _, ok := seal.ParseLinkName(e.Name()); ok {
			links = append(links, e.Name())
		}
	}
	return links, attempts, nil
}
