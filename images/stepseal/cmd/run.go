package cmd

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
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/localrun"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// builderID identifies the local runner as the build platform in provenance.
const builderID = "https://stepseal.dev/localrun/v1"

// Names of the non-functionary keys `stepseal run` uses.
const (
	ownerKeyName   = "owner"
	builderKeyName = "publisher"
)

type runOptions struct {
	out, keys, tasks, functionaries string
	platformPolicy                  string
	params                          []string
	exclude                         []string
	quiet, force                    bool
}

type runReport struct {
	RunID      string           `json:"runID"`
	Pipeline   string           `json:"pipeline"`
	Out        string           `json:"out"`
	Layout     string           `json:"layout"`
	Links      []string         `json:"links"`
	Provenance string           `json:"provenance,omitempty"`
	Output     string           `json:"output,omitempty"`
	RunError   string           `json:"runError,omitempty"`
	Verdict    *verify.Verdict  `json:"verdict,omitempty"`
	Published  *publishedReport `json:"published,omitempty"`
	Log        *logReport       `json:"log,omitempty"`
}

func newRun(ro *rootOptions) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run PATH --out DIR",
		Short: "Run a Tekton Pipeline on this host, sign every step, and verify the result",
		Long: `Run a Tekton v1 Pipeline on this host without a cluster (the embedded default).

PATH is an example directory (pipeline.yaml, tasks/, functionaries.yaml) or a
Pipeline file. Steps run as host processes: each step's image is recorded in
its link, not pulled. stepseal generates the in-toto layout from the Pipeline,
signs it with the owner key, records and signs a link per step with the key of
the functionary the layout assigns, writes SLSA v1 provenance, stores all of it,
verifies it, and prints the verdict. Exit status 0 only if verification passed.

Writes DIR/root.layout, DIR/keys/*.pub, DIR/links/<step>.<keyid8>.link,
DIR/provenance.json (DSSE), DIR/verification.json, DIR/store/ and the
workspaces under DIR/work/workspaces/. Without --keys, throwaway keys are made in
DIR/keys (owner, publisher, one per functionary).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, ro, args[0]) },
	}
	c.Flags().StringVar(&o.out, "out", "", "output directory (must not exist or be empty)")
	c.Flags().StringVar(&o.keys, "keys", "", "directory with owner.key, publisher.key and <functionary>.key (default: make throwaway keys)")
	c.Flags().StringVar(&o.tasks, "tasks", "", "directory of Task files (default: PATH/tasks for an example directory)")
	c.Flags().StringVar(&o.functionaries, "functionaries", "", "functionaries file (default: functionaries.yaml next to the pipeline)")
	c.Flags().StringVar(&o.platformPolicy, "platform-policy", "", "platform policy for publishing the output (default: platform-policy.yaml next to the pipeline, if present)")
	c.Flags().StringArrayVarP(&o.params, "param", "p", nil, "pipeline parameter NAME=VALUE (repeatable)")
	c.Flags().StringArrayVar(&o.exclude, "exclude", nil, "gitignore-style pattern of workspace paths not to record (repeatable)")
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "do not stream step output")
	c.Flags().BoolVar(&o.force, "force", false, "replace a non-empty --out directory")
	return c
}

// resolvePaths finds the pipeline, tasks dir and functionaries file of PATH.
func (o *runOptions) resolvePaths(path string) (pipeline, tasks, functionaries, platformPolicy string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", "", "", err
	}
	dir := filepath.Dir(path)
	pipeline = path
	if st.IsDir() {
		dir = path
		pipeline = filepath.Join(path, "pipeline.yaml")
	}
	tasks = o.tasks
	if tasks == "" {
		if st, err := os.Stat(filepath.Join(dir, "tasks")); err == nil && st.IsDir() {
			tasks = filepath.Join(dir, "tasks")
		}
	}
	functionaries = o.functionaries
	if functionaries == "" {
		functionaries = filepath.Join(dir, "functionaries.yaml")
	}
	platformPolicy = o.platformPolicy
	if platformPolicy == "" {
		if _, err := os.Stat(filepath.Join(dir, "platform-policy.yaml")); err == nil {
			platformPolicy = filepath.Join(dir, "platform-policy.yaml")
		}
	}
	return pipeline, tasks, functionaries, platformPolicy, nil
}

// incompleteMarker is in an output directory while `stepseal run` writes
// it: one that still has it was left by a run that was killed, and a new
// run replaces it without --force.
const incompleteMarker = ".stepseal-incomplete"

// prepareOut makes sure the output directory is new, empty, or the leftover
// of a killed run, and marks it incomplete. It returns a cleanup that
// removes what this run created (for bad input and interruptions) and a
// done that removes the mark.
func (o *runOptions) prepareOut(w io.Writer) (cleanup, done func(), err error) {
	entries, err := os.ReadDir(o.out)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return nil, nil, err
		}
		created = true
	case err != nil:
		return nil, nil, fmt.Errorf("--out %s: %w", o.out, err)
	case len(entries) > 0 && !o.force:
		if _, err := os.Stat(filepath.Join(o.out, incompleteMarker)); err != nil {
			return nil, nil, fmt.Errorf("--out %s is not empty (use --force to replace it)", o.out)
		}
		fmt.Fprintf(w, "replacing the incomplete output of an interrupted run in %s\n", o.out)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(o.out, e.Name())); err != nil {
			return nil, nil, err
		}
	}
	marker := filepath.Join(o.out, incompleteMarker)
	if err := os.WriteFile(marker, []byte("stepseal run is writing this directory, or was killed while it did\n"), 0o644); err != nil {
		return nil, nil, err
	}
	cleanup = func() {
		if created {
			os.RemoveAll(o.out)
			return
		}
		entries, _ := os.ReadDir(o.out)
		for _, e := range entries {
			if e.Name() != incompleteMarker {
				os.RemoveAll(filepath.Join(o.out, e.Name()))
			}
		}
		os.Remove(marker)
	}
	return cleanup, func() { os.Remove(marker) }, nil
}

func (o *runOptions) run(cmd *cobra.Command, ro *rootOptions, path string) (err error) {
	ctx := cmd.Context()
	w := cmd.OutOrStdout()
	if ro.output == "json" {
		w = cmd.ErrOrStderr() // progress to stderr, the report to stdout
	}
	if o.out == "" {
		return fmt.Errorf("--out is required")
	}
	params, err := parseParams(o.params)
	if err != nil {
		return err
	}
	pipelinePath, tasksDir, functionariesPath, platformPolicyPath, err := o.resolvePaths(path)
	if err != nil {
		return err
	}
	// Everything that can be wrong with the input is checked before the
	// output directory is touched.
	spec, err := tekton.Load(ctx, pipelinePath, tasksDir)
	if err != nil {
		return err
	}
	f, err := layout.LoadFunctionaries(functionariesPath)
	if err != nil {
		return err
	}
	for _, n := range f.Names() {
		if n == ownerKeyName || n == builderKeyName {
			return fmt.Errorf("%s: functionary name %q is reserved for the layout owner / build platform key", functionariesPath, n)
		}
	}
	declared, err := f.PublicKeys()
	if err != nil {
		return err
	}
	if o.keys == "" && len(declared) > 0 {
		return fmt.Errorf("%s declares public keys for %s: pass --keys DIR with their private keys", functionariesPath, strings.Join(sortedNames(declared), ", "))
	}
	cleanup, done, err := o.prepareOut(w)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		switch {
		case ctx.Err() != nil:
			// Interrupted: a half-written output is worth nothing; remove
			// it (the marker covers a kill that leaves no time for this).
			cleanup()
			err = fmt.Errorf("removed the partial output %s: %w", o.out, ctx.Err())
		case err != nil && !started:
			cleanup()
		default:
			done()
		}
	}()

	keysDir := filepath.Join(o.out, "keys")
	keys, err := o.loadOrMakeKeys(w, f.Names(), keysDir)
	if err != nil {
		return err
	}
	signers := map[string]signing.Signer{}
	for n, k := range keys {
		if signers[n], err = signing.NewSigner(k); err != nil {
			return err
		}
	}
	pubKeys := map[string]in_toto.Key{}
	for name, s := range signers {
		k, err := signing.InTotoKey(s.Public())
		if err != nil {
			return err
		}
		if d, ok := declared[name]; ok && d.KeyID != k.KeyID {
			return fmt.Errorf("key %s/%s.key (key id %.8s) does not match the public key %s declares for %s (%.8s)", o.keys, name, k.KeyID, functionariesPath, name, d.KeyID)
		}
		if name != ownerKeyName && name != builderKeyName {
			pubKeys[name] = k
		}
	}
	l, err := layout.FromPipeline(spec, f, pubKeys, layout.Options{})
	if err != nil {
		return err
	}
	mb, err := layout.Sign(ctx, *l, signers[ownerKeyName])
	if err != nil {
		return err
	}
	layoutPath := filepath.Join(o.out, "root.layout")
	if err := layout.Write(layoutPath, mb); err != nil {
		return err
	}
	var pol *policy.Policy
	var platformKeys map[string]crypto.PrivateKey
	if platformPolicyPath != "" && f.Spec.Output != "" {
		if pol, platformKeys, err = prepareRunPolicy(ctx, w, platformPolicyPath, o.out, signers[ownerKeyName]); err != nil {
			return err
		}
	}
	runID := newRunID()
	linkDir := filepath.Join(o.out, "links")
	if err := os.MkdirAll(linkDir, 0o755); err != nil {
		return err
	}
	stepSigners := func(step string) ([]signing.Signer, error) {
		names, _, err := f.For(step)
		if err != nil {
			return nil, err
		}
		out := make([]signing.Signer, 0, len(names))
		for _, n := range names {
			out = append(out, signers[n])
		}
		return out, nil
	}
	fmt.Fprintf(w, "stepseal run %s: pipeline %s, run %s\n", path, spec.Pipeline.Name, runID)
	started = true
	rec, runErr := localrun.Run(ctx, spec, localrun.Options{
		Params:            params,
		WorkDir:           filepath.Join(o.out, "work"),
		LinkDir:           linkDir,
		Signers:           stepSigners,
		Exclude:           o.exclude,
		Out:               w,
		Quiet:             o.quiet,
		RunID:             runID,
		DefaultWorkingDir: filepath.Dir(pipelinePath),
	})
	report := runReport{RunID: runID, Pipeline: spec.Pipeline.Name, Out: o.out, Layout: layoutPath}
	links, linkDigests, err := listLinks(linkDir)
	if err != nil {
		return err
	}
	report.Links = links
	if runErr != nil && errors.Is(runErr, localrun.ErrInvalid) && len(links) == 0 {
		// Rejected before any step ran: bad input, leave nothing behind.
		started = false
		return runErr
	}

	// Keep everything in the store too — layout, links and provenance —
	// an embedded transparency log, so the record is tamper-evident.
	st, err := openRunLog(ctx, o.out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(context.WithoutCancel(ctx)); err == nil {
			err = cerr
		}
	}()
	if err := storeRun(ctx, st, layoutPath, linkDir, links, rec, runID); err != nil {
		return err
	}

	var outputs map[string]run.DigestSet
	if runErr != nil {
		report.RunError = OneLine(runErr)
		fmt.Fprintf(w, "pipeline run failed: %s\n", report.RunError)
	} else {
		if f.Spec.Output != "" {
			ws, rel, _ := strings.Cut(f.Spec.Output, "/")
			file := filepath.Join(o.out, "work", "workspaces", ws, filepath.FromSlash(rel))
			d, err := fileSHA256(file)
			if err != nil {
				return fmt.Errorf("declared output %s: %w", f.Spec.Output, err)
			}
			outputs = map[string]run.DigestSet{f.Spec.Output: {"sha256": d}}
			report.Output = file
		}
		prov, err := writeProvenance(ctx, w, rec, outputs, pipelinePath, tasksDir, linkDigests, signers[builderKeyName], filepath.Join(o.out, "provenance.json"))
		if err != nil {
			return err
		}
		if _, err := st.Put(ctx, prov); err != nil {
			return err
		}
		report.Provenance = filepath.Join(o.out, "provenance.json")
	}

	if report.Log, err = proveRunLog(ctx, w, o.out, st, runID); err != nil {
		return err
	}

	fmt.Fprintf(w, "verifying %s against %d link(s)\n", layoutPath, len(links))
	data, err := verify.ReadFile(layoutPath)
	if err != nil {
		return err
	}
	owner, err := signing.NewVerifier(signers[ownerKeyName].Public())
	if err != nil {
		return err
	}
	v, verr := verify.Layout(ctx, data, []signing.Verifier{owner}, verify.Dir(linkDir), verify.Options{RunID: runID, Artifacts: outputs, WithoutArtifactUnsafe: len(outputs) == 0, LayoutName: layoutPath})
	if v == nil {
		return verr
	}
	report.Verdict = v
	vj, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := signing.WriteFileAtomic(filepath.Join(o.out, "verification.json"), append(vj, '\n'), 0o644); err != nil {
		return err
	}
	// In text mode the verdict is printed as soon as it is known; publishing
	// (only of a verified output) follows and ends with its own summary.
	if ro.output != "json" {
		printVerdict(w, v)
		if runErr != nil && v.Passed {
			// The last line and the exit status must agree.
			fmt.Fprintf(w, "RESULT: FAILED: the pipeline run failed (%s), although the links of the steps that ran verify\n", report.RunError)
		}
	}
	var pubErr error
	if verr == nil && runErr == nil && pol != nil {
		prov, err := signing.ReadEnvelope(report.Provenance)
		if err != nil {
			return err
		}
		report.Published, pubErr = publishRunOutput(ctx, w, pol, platformKeys, spec.Pipeline.Name, runID, report.Output, prov, keys[builderKeyName])
	}
	if err := ro.print(cmd.OutOrStdout(), report, func(io.Writer) {
		if p := report.Published; p != nil && p.Verified && pubErr == nil {
			fmt.Fprintf(w, "RESULT: verification passed; %s published encrypted to %v, signed, attested, and decrypted back by %s\n", f.Spec.Output, p.Platforms, p.Platforms[0])
		}
	}); err != nil {
		return err
	}
	switch {
	case pubErr != nil:
		return pubErr
	case verr != nil:
		return reportedError{verr}
	case runErr != nil:
		return reportedError{runErr}
	}
	return nil
}

// loadOrMakeKeys returns the private key of every functionary plus the
// owner and the publisher. With --keys they are read from there; otherwise
// throwaway ed25519 keys are written to keysDir (private keys 0600). Only
// public keys are copied to keysDir when --keys is given.
func (o *runOptions) loadOrMakeKeys(w io.Writer, functionaries []string, keysDir string) (map[string]crypto.Signer, error) {
	names := append([]string{ownerKeyName, builderKeyName}, functionaries...)
	out := map[string]crypto.Signer{}
	if o.keys == "" {
		fmt.Fprintf(w, "no --keys given: making throwaway ed25519 keys in %s (%s)\n", keysDir, strings.Join(names, ", "))
	}
	for _, n := range names {
		if o.keys != "" {
			k, err := loadCryptoSigner(filepath.Join(o.keys, n+".key"))
			if err != nil {
				return nil, err
			}
			pub, err := signing.MarshalPublicKeyPEM(k.Public())
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(keysDir, 0o755); err != nil {
				return nil, err
			}
			if err := signing.WriteFileAtomic(filepath.Join(keysDir, n+".pub"), pub, 0o644); err != nil {
				return nil, err
			}
			out[n] = k
			continue
		}
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			return nil, err
		}
		if _, _, err := signing.WriteKeyPair(keysDir, n, k, nil); err != nil {
			return nil, err
		}
		out[n] = k
	}
	return out, nil
}

func parseParams(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q: want NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
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

// listLinks returns the link file names of dir and the sha256 of each file.
func listLinks(dir string) ([]string, run.Artifacts, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	digests := run.Artifacts{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".link") {
			continue
		}
		d, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		names = append(names, e.Name())
		digests[e.Name()] = run.DigestSet{"sha256": d}
	}
	return names, digests, nil
}

func writeProvenance(ctx context.Context, w io.Writer, rec *run.Record, outputs map[string]run.DigestSet, pipelinePath, tasksDir string, links run.Artifacts, builder signing.Signer, path string) (store.Entry, error) {
	defs := run.Artifacts{}
	files := []string{pipelinePath}
	if tasksDir != "" {
		if m, err := filepath.Glob(filepath.Join(tasksDir, "*.y*ml")); err == nil {
			files = append(files, m...)
		}
	}
	for _, p := range files {
		d, err := fileSHA256(p)
		if err != nil {
			return store.Entry{}, err
		}
		defs[filepath.ToSlash(p)] = run.DigestSet{"sha256": d}
	}
	subjects := run.Artifacts{}
	for k, v := range outputs {
		subjects[k] = v
	}
	opts := attest.ProvenanceOptions{Subjects: subjects, LinkSubjects: true, BuilderID: builderID, Definitions: defs, Links: links}
	subj, covers, err := attest.Subjects(rec, opts)
	if err != nil {
		return store.Entry{}, err
	}
	switch covers {
	case attest.CoversOutput:
		fmt.Fprintf(w, "provenance: about the declared output %s\n", strings.Join(subj.Names(), ", "))
	case attest.CoversLastStepProducts:
		fmt.Fprintf(w, "provenance: no output declared; about the %d product(s) of the last step\n", len(subj))
	case attest.CoversLinks:
		fmt.Fprintf(w, "provenance: no output declared and the last step produced no file; about the run's %d signed link(s), which are all it produced\n", len(subj))
	}
	stmt, err := attest.Provenance(rec, opts)
	if err != nil {
		return store.Entry{}, err
	}
	env, err := attest.SignStatement(ctx, stmt, builder)
	if err != nil {
		return store.Entry{}, err
	}
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return store.Entry{}, err
	}
	if err := signing.WriteFileAtomic(path, append(data, '\n'), 0o644); err != nil {
		return store.Entry{}, err
	}
	e := store.Entry{Kind: store.KindProvenance, Name: "provenance.json", RunID: rec.RunID, Data: data}
	for _, s := range stmt.Subject {
		if d := s.Digest["sha256"]; d != "" {
			e.Subjects = append(e.Subjects, "sha256:"+d)
		}
	}
	return e, nil
}

// storeRun puts the layout and every link of the run into the store; a
// link's subjects are its products.
func storeRun(ctx context.Context, st store.Store, layoutPath, linkDir string, links []string, rec *run.Record, runID string) error {
	data, err := os.ReadFile(layoutPath)
	if err != nil {
		return err
	}
	if _, err := st.Put(ctx, store.Entry{Kind: store.KindLayout, Name: "root.layout", RunID: runID, Data: data}); err != nil {
		return err
	}
	products := map[string][]string{}
	if rec != nil {
		for _, s := range rec.AllSteps() {
			for _, d := range s.Products {
				if h := d["sha256"]; h != "" {
					products[s.Name] = append(products[s.Name], "sha256:"+h)
				}
			}
		}
	}
	for _, n := range links {
		data, err := os.ReadFile(filepath.Join(linkDir, n))
		if err != nil {
			return err
		}
		step := strings.TrimSuffix(n, ".link")
		if i := strings.LastIndexByte(step, '.'); i > 0 {
			step = step[:i]
		}
		if _, err := st.Put(ctx, store.Entry{Kind: store.KindLink, Name: n, RunID: runID, Data: data, Subjects: products[step]}); err != nil {
			return err
		}
	}
	return nil
}
