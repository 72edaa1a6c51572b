package layout

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Errors callers branch on with errors.Is; each also matches its reason in
// stepseal's shared vocabulary (pkg/reject).
var (
	// ErrFunctionaries: a Functionaries file is unreadable or invalid
	// (reject.ErrMalformed).
	ErrFunctionaries = reject.Sentinel(reject.ErrMalformed, "invalid functionaries file")
	// ErrNoFunctionary: no entry of the Functionaries file matches a step, so
	// nobody may perform it. Generation fails closed rather than leave the step
	// unprotected (reject.ErrPolicy: the file is the policy of who may
	// perform which step).
	ErrNoFunctionary = reject.Sentinel(reject.ErrPolicy, "no functionary may perform step")
)

// Kind and API version of a Functionaries file.
const (
	FunctionariesAPIVersion = "stepseal.dev/v1alpha1"
	FunctionariesKind       = "Functionaries"
)

// MaxFunctionariesSize bounds the Functionaries file: it is a short list, a
// huge file is a mistake or an attack.
const MaxFunctionariesSize = 1 << 20

// DefaultExpiry is how long a layout stays valid when the Functionaries file
// does not say.
const DefaultExpiry = 30 * 24 * time.Hour

// Functionaries says who may perform which step of a pipeline.
//
//	apiVersion: stepseal.dev/v1alpha1
//	kind: Functionaries
//	metadata: {name: go-build}
//	spec:
//	  functionaries:
//	  - name: builder
//	    publicKey: keys/builder.pub   # optional, relative to this file
//	  steps:
//	  - match: "build.*"              # path.Match glob over <pipelineTask>.<step>
//	    functionaries: [builder]
//	    threshold: 1                  # optional, default 1
//	  output: dist/app.tar.gz         # optional, <workspace>/<path>
//	  expires: 720h                   # optional, Go duration or <n>d, default 30d
type Functionaries struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Metadata          `json:"metadata"`
	Spec       FunctionariesSpec `json:"spec"`

	// Path is the file the Functionaries came from; relative publicKey paths
	// resolve against its directory.
	Path string `json:"-"`
	// expiresIn is Spec.Expires parsed (DefaultExpiry when empty).
	expiresIn time.Duration
}

// Metadata is the object metadata a Functionaries file may carry.
type Metadata struct {
	Name        string            `json:"name,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// FunctionariesSpec is the body of a Functionaries file.
type FunctionariesSpec struct {
	Functionaries []Functionary `json:"functionaries"`
	Steps         []StepRule    `json:"steps"`
	// Output is the artifact the pipeline delivers, "<workspace>/<path>".
	Output string `json:"output,omitempty"`
	// Expires is how long a generated layout is valid: a Go duration
	// ("720h") or a number of days ("30d").
	Expires string `json:"expires,omitempty"`
	// SkipSigner names the functionary whose key signs the skip records
	// of tasks Tekton skips (the orchestrator: in a cluster, stepseal's
	// controller). Optional; `stepseal run` uses its build platform key.
	SkipSigner string `json:"skipSigner,omitempty"`
}

// Functionary is a named party that performs steps.
type Functionary struct {
	Name string `json:"name"`
	// PublicKey is the path of the functionary's PEM public key, relative to
	// the Functionaries file. Optional: callers may supply keys otherwise.
	PublicKey string `json:"publicKey,omitempty"`
}

// StepRule assigns functionaries to the steps whose names match a glob.
type StepRule struct {
	// Match is a path.Match pattern over step names "<pipelineTask>.<step>"
	// ("build.*", "*.sign", "test.unit"). The first matching rule wins.
	Match         string   `json:"match"`
	Functionaries []string `json:"functionaries"`
	// Threshold is how many distinct functionaries must each sign a link for
	// the step; 0 (or absent) means 1.
	Threshold int `json:"threshold,omitempty"`
}

// LoadFunctionaries reads and validates a Functionaries file. Unknown or
// duplicate fields are rejected; every error is one line naming the file and
// the field.
func LoadFunctionaries(path string) (*Functionaries, error) {
	data, err := limited.ReadFile(path, MaxFunctionariesSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFunctionaries, err)
	}
	return ParseFunctionaries(data, path)
}

// ParseFunctionaries parses and validates the content of a Functionaries
// file; path is used in error messages and to resolve publicKey paths.
func ParseFunctionaries(data []byte, path string) (*Functionaries, error) {
	if len(data) > MaxFunctionariesSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFunctionaries, path, MaxFunctionariesSize)
	}
	// YAMLToJSONStrict rejects duplicate keys; kjson.UnmarshalStrict is
	// case-sensitive and names the full path of an unknown field.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrFunctionaries, path, oneLine(err.Error()))
	}
	var f Functionaries
	strict, err := kjson.UnmarshalStrict(js, &f)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrFunctionaries, path, oneLine(err.Error()))
	}
	f.Path = path
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFunctionaries, path, err)
	}
	return &f, nil
}

func (f *Functionaries) validate() error {
	if f.APIVersion != FunctionariesAPIVersion {
		return fmt.Errorf("apiVersion: %q, want %s", f.APIVersion, FunctionariesAPIVersion)
	}
	if f.Kind != FunctionariesKind {
		return fmt.Errorf("kind: %q, want %s", f.Kind, FunctionariesKind)
	}
	s := &f.Spec
	if len(s.Functionaries) == 0 {
		return errors.New("spec.functionaries: at least one functionary is required")
	}
	declared := map[string]bool{}
	for i, fn := range s.Functionaries {
		field := fmt.Sprintf("spec.functionaries[%d]", i)
		if err := checkName(fn.Name); err != nil {
			return fmt.Errorf("%s.name: %w", field, err)
		}
		if declared[fn.Name] {
			return fmt.Errorf("%s.name: %q is declared twice", field, fn.Name)
		}
		declared[fn.Name] = true
		if fn.PublicKey != "" && strings.ContainsRune(fn.PublicKey, 0) {
			return fmt.Errorf("%s.publicKey: not a path", field)
		}
	}
	if s.SkipSigner != "" && !declared[s.SkipSigner] {
		return fmt.Errorf("spec.skipSigner: %q is not declared in spec.functionaries", s.SkipSigner)
	}
	if len(s.Steps) == 0 {
		return errors.New("spec.steps: at least one entry is required (a step no entry matches cannot be performed)")
	}
	for i, r := range s.Steps {
		field := fmt.Sprintf("spec.steps[%d]", i)
		if r.Match == "" {
			return fmt.Errorf("%s.match: required", field)
		}
		if _, err := path.Match(r.Match, ""); err != nil {
			return fmt.Errorf("%s.match: %q is not a valid glob: %w", field, r.Match, err)
		}
		if len(r.Functionaries) == 0 {
			return fmt.Errorf("%s.functionaries: at least one functionary is required", field)
		}
		seen := map[string]bool{}
		for j, n := range r.Functionaries {
			if !declared[n] {
				return fmt.Errorf("%s.functionaries[%d]: %q is not declared in spec.functionaries", field, j, n)
			}
			if seen[n] {
				return fmt.Errorf("%s.functionaries[%d]: %q is listed twice", field, j, n)
			}
			seen[n] = true
		}
		if r.Threshold < 0 {
			return fmt.Errorf("%s.threshold: %d is negative", field, r.Threshold)
		}
		if r.Threshold > len(r.Functionaries) {
			return fmt.Errorf("%s.threshold: %d exceeds the %d functionaries listed", field, r.Threshold, len(r.Functionaries))
		}
	}
	if s.Output != "" {
		if _, _, err := SplitOutput(s.Output); err != nil {
			return fmt.Errorf("spec.output: %w", err)
		}
	}
	f.expiresIn = DefaultExpiry
	if s.Expires != "" {
		d, err := ParseExpiry(s.Expires)
		if err != nil {
			return fmt.Errorf("spec.expires: %w", err)
		}
		f.expiresIn = d
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return errors.New("required")
	}
	if len(n) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, r := range n {
		if r <= ' ' || r == 0x7f || r == '/' {
			return fmt.Errorf("%q contains whitespace, a control character or '/'", n)
		}
	}
	return nil
}

// SplitOutput splits an output "<workspace>/<path>" and checks it names one
// file exactly: REQUIRE rules compare names literally.
func SplitOutput(out string) (workspace, rel string, err error) {
	ws, rel, ok := strings.Cut(out, "/")
	if !ok || ws == "" || rel == "" {
		return "", "", fmt.Errorf("%q is not <workspace>/<path>", out)
	}
	if path.Clean(out) != out || rel == ".." || strings.HasPrefix(rel, "../") || ws == "." || ws == ".." {
		return "", "", fmt.Errorf("%q is not a clean relative path", out)
	}
	if strings.ContainsAny(out, "*?[\\") || strings.ContainsFunc(out, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", "", fmt.Errorf("%q must name one file (no glob characters or control characters)", out)
	}
	return ws, rel, nil
}

// ParseExpiry parses a layout validity: a Go duration ("720h") or a whole
// number of days ("30d"); zero or negative is an error.
func ParseExpiry(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 720h or 30d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 720h or 30d)", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

// ExpiresIn is how long a layout generated from f stays valid.
func (f *Functionaries) ExpiresIn() time.Duration {
	if f.expiresIn == 0 {
		return DefaultExpiry
	}
	return f.expiresIn
}

// For returns the functionaries allowed to perform step and how many of them
// must sign it. The first entry whose pattern matches wins. A step no entry
// matches is an error (ErrNoFunctionary): nobody may perform it.
func (f *Functionaries) For(step string) (names []string, threshold int, err error) {
	for _, r := range f.Spec.Steps {
		ok, err := path.Match(r.Match, step)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: pattern %q: %w", ErrFunctionaries, f.Path, r.Match, err)
		}
		if ok {
			t := r.Threshold
			if t == 0 {
				t = 1
			}
			return append([]string(nil), r.Functionaries...), t, nil
		}
	}
	return nil, 0, fmt.Errorf("%w %s: no entry of %s spec.steps matches it", ErrNoFunctionary, step, f.Path)
}

// PublicKeyPath is where the public key of the named functionary is read
// from: its publicKey resolved against the file's directory, or "" if the
// file gives none.
func (f *Functionaries) PublicKeyPath(name string) string {
	for _, fn := range f.Spec.Functionaries {
		if fn.Name != name || fn.PublicKey == "" {
			continue
		}
		if filepath.IsAbs(fn.PublicKey) {
			return fn.PublicKey
		}
		return filepath.Join(filepath.Dir(f.Path), filepath.FromSlash(fn.PublicKey))
	}
	return ""
}

// PublicKeys loads the keys of the functionaries that name a publicKey file,
// keyed by functionary name. Functionaries without one are left out.
func (f *Functionaries) PublicKeys() (map[string]in_toto.Key, error) {
	keys := map[string]in_toto.Key{}
	for i, fn := range f.Spec.Functionaries {
		p := f.PublicKeyPath(fn.Name)
		if p == "" {
			continue
		}
		v, err := signing.LoadVerifier(p)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.functionaries[%d].publicKey: %w", f.Path, i, err)
		}
		k, err := signing.InTotoKey(v.Public())
		if err != nil {
			return nil, fmt.Errorf("%s: spec.functionaries[%d].publicKey: %w", f.Path, i, err)
		}
		keys[fn.Name] = k
	}
	return keys, nil
}

// Names returns the declared functionary names in file order.
func (f *Functionaries) Names() []string {
	out := make([]string, len(f.Spec.Functionaries))
	for i, fn := range f.Spec.Functionaries {
		out[i] = fn.Name
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
