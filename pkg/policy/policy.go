package policy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/stepseal/stepseal/pkg/signing"
	"sigs.k8s.io/yaml"
)

// Document identity.
const (
	APIVersion = "stepseal.dev/v1alpha1"
	Kind       = "PlatformPolicy"
	// PayloadType is the DSSE payload type of a signed policy.
	PayloadType = "application/vnd.stepseal.platform-policy+json"
	// MaxSize caps a policy document or envelope.
	MaxSize = 1 << 20
)

// Platform is a party that may decrypt artifacts: a name, the public key
// artifacts are encrypted to, and free-form labels.
type Platform struct {
	Name      string
	PublicKey crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
	// Fingerprint is Fingerprint(PublicKey); crypt uses it as the JWE "kid".
	Fingerprint string
	Labels      map[string]string
}

// Rule is the artifact rule that matched a reference.
type Rule struct {
	// Match is the rule's pattern as written, Index its position in
	// spec.artifacts.
	Match string
	Index int
	// Platforms are exactly the platforms that may decrypt the artifact, in
	// the order the rule lists them.
	Platforms []Platform
	// Encrypt says the artifact is published encrypted to exactly
	// Platforms; false means it is public (and Platforms is empty).
	Encrypt bool
}

// Policy is a parsed, validated platform policy.
type Policy struct {
	Name    string
	Version int64 // 0 when an unsigned document carries no version
	// Platforms in document order.
	Platforms []Platform
	// SignedBy holds the owner key IDs whose signatures were accepted; empty
	// for an unsigned policy.
	SignedBy []string

	rules  []rule
	byName map[string]int
	source string
	raw    []byte
	digest string
}

type rule struct {
	pat       pattern
	platforms []int
	encrypt   bool
}

// Options control Parse and Load.
type Options struct {
	// Keys are the policy owners' keys. When set, only a DSSE envelope
	// signed by at least Threshold of them is accepted.
	Keys []signing.Verifier
	// Threshold of distinct owner signatures; 1 when zero.
	Threshold int
	// MinVersion refuses a policy whose version is lower (rollback).
	MinVersion int64
	// BaseDir resolves publicKey paths of an unsigned document. Load sets it
	// to the file's directory; when empty, key paths are refused.
	BaseDir string
	// State, when set, refuses a signed policy older than (ErrRollback), or
	// of the same version but other content than (a fork, ErrRollback), the
	// one it recorded for the same name and owner keys, and records the
	// policy once it verified. Unsigned policies are not tracked: whoever
	// can write one can give it any version.
	State *State
}

// Platform returns the platform with the given name.
func (p *Policy) Platform(name string) (Platform, bool) {
	i, ok := p.byName[name]
	if !ok {
		return Platform{}, false
	}
	return p.Platforms[i], true
}

// Raw returns the bytes the policy was parsed from, unchanged: the signed
// envelope of a signed policy, ready to be distributed again (TUF target).
func (p *Policy) Raw() []byte { return bytes.Clone(p.raw) }

// Source names where the policy came from (a file path or a label).
func (p *Policy) Source() string { return p.source }

// Digest is "sha256:" and the hex SHA-256 of the policy document: the signed
// payload of a signed policy (the same however often it is re-signed), the
// bytes of an unsigned one.
func (p *Policy) Digest() string { return p.digest }

// Rule returns the rule for an artifact reference. The reference is reduced
// to its repository (see Repository) and rules are tried in document order:
// the first whose pattern matches wins, so authors put narrow patterns before
// broad ones. No matching rule is ErrNoRule: callers must refuse the artifact.
func (p *Policy) Rule(ref string) (Rule, error) {
	repo, err := Repository(ref)
	if err != nil {
		return Rule{}, err
	}
	for i, r := range p.rules {
		if !r.pat.match(repo) {
			continue
		}
		out := Rule{Match: r.pat.text, Index: i, Encrypt: r.encrypt, Platforms: make([]Platform, len(r.platforms))}
		for j, pi := range r.platforms {
			out.Platforms[j] = p.Platforms[pi]
		}
		return out, nil
	}
	return Rule{}, fmt.Errorf("%w: %s (repository %s) matches no artifact rule of policy %q version %d", ErrNoRule, ref, repo, p.Name, p.Version)
}

// Load reads a policy file: a plain YAML/JSON document, or a DSSE envelope
// signed by the owners. With opts.Keys set, an unsigned file is refused.
func Load(path string, opts Options) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(path)
	}
	return Parse(data, path, opts)
}

// envelope is a DSSE envelope, decoded strictly so that a plain document is
// never mistaken for one.
type envelope struct {
	PayloadType string           `json:"payloadType"`
	Payload     string           `json:"payload"`
	Signatures  []dsse.Signature `json:"signatures"`
}

func asEnvelope(data []byte) (*dsse.Envelope, bool) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.PayloadType == "" || dec.More() {
		return nil, false
	}
	return &dsse.Envelope{PayloadType: e.PayloadType, Payload: e.Payload, Signatures: e.Signatures}, true
}

// Parse parses policy bytes as distributed (file contents or a TUF target);
// source names them in errors.
func Parse(data []byte, source string, opts Options) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, source, MaxSize)
	}
	env, signed := asEnvelope(data)
	var (
		doc      []byte
		signedBy []string
	)
	switch {
	case signed && len(opts.Keys) == 0:
		return nil, fmt.Errorf("%w: %s is a signed policy but no policy key was given to verify it", ErrSignature, source)
	case signed:
		if env.PayloadType != PayloadType {
			return nil, fmt.Errorf("%w: %s: payload type %q, want %q", ErrSignature, source, env.PayloadType, PayloadType)
		}
		ids, err := signing.VerifyEnvelope(context.Background(), env, opts.Threshold, opts.Keys...)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSignature, source, err)
		}
		payload, err := env.DecodeB64Payload()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: payload: %w", ErrSignature, source, err)
		}
		doc, signedBy = payload, ids
	case len(opts.Keys) > 0:
		return nil, fmt.Errorf("%w: %s is not signed, and policy keys were given", ErrSignature, source)
	default:
		doc = data
	}
	p, err := parseDocument(doc, source, signed, opts.BaseDir)
	if err != nil {
		return nil, err
	}
	if signed && p.Version < 1 {
		return nil, fmt.Errorf("%w: %s: metadata.version: a signed policy needs a positive version", ErrInvalid, source)
	}
	if p.Version < opts.MinVersion {
		return nil, fmt.Errorf("%w: %s: policy %q version %d is older than version %d already accepted", ErrRollback, source, p.Name, p.Version, opts.MinVersion)
	}
	p.SignedBy = signedBy
	p.raw = bytes.Clone(data)
	sum := sha256.Sum256(doc)
	p.digest = "sha256:" + hex.EncodeToString(sum[:])
	if signed && opts.State != nil {
		owners, err := ownerIDs(opts.Keys)
		if err != nil {
			return nil, err
		}
		if err := opts.State.Accept(p, owners); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Document is the policy file format, as written (YAML or JSON) and as
// signed (the JSON payload of the envelope). DecodeDocument reads one
// strictly; Parse validates it into a Policy. Programs that make or edit a
// policy (stepseal run gives platforms throwaway keys) edit a Document, not
// untyped YAML.
type Document struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion"`
	Kind       string   `json:"kind" yaml:"kind"`
	Metadata   Metadata `json:"metadata" yaml:"metadata"`
	Spec       Spec     `json:"spec" yaml:"spec"`
}

// Metadata names and versions a policy.
type Metadata struct {
	Name string `json:"name" yaml:"name"`
	// Version is required (positive) for a signed policy.
	Version *int64 `json:"version,omitempty" yaml:"version,omitempty"`
}

// Spec lists the platforms and the artifact rules, in order.
type Spec struct {
	Platforms []PlatformEntry `json:"platforms" yaml:"platforms"`
	Artifacts []ArtifactRule  `json:"artifacts" yaml:"artifacts"`
}

// PlatformEntry is one platform as written. PublicKey is kept as written: a
// string (inline PEM or JWK, or in an unsigned document a path relative to
// it) or a JWK object; absent, it is empty.
type PlatformEntry struct {
	Name      string            `json:"name" yaml:"name"`
	PublicKey json.RawMessage   `json:"publicKey,omitempty" yaml:"publicKey,omitempty"`
	Labels    map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// HasPublicKey reports whether the entry has a publicKey field (even an
// invalid one).
func (e *PlatformEntry) HasPublicKey() bool { return len(bytes.TrimSpace(e.PublicKey)) > 0 }

// SetPublicKey inlines pub as a PKIX PEM block.
func (e *PlatformEntry) SetPublicKey(pub crypto.PublicKey) error {
	pemKey, err := marshalPEM(pub)
	if err != nil {
		return fmt.Errorf("%w: platform %q: %w", ErrInvalid, e.Name, err)
	}
	raw, err := json.Marshal(pemKey)
	if err != nil {
		return err
	}
	e.PublicKey = raw
	return nil
}

// ArtifactRule is one entry of spec.artifacts as written.
type ArtifactRule struct {
	Match     string   `json:"match" yaml:"match"`
	Platforms []string `json:"platforms" yaml:"platforms"`
	Encrypt   bool     `json:"encrypt" yaml:"encrypt"`
}

// DecodeDocument decodes a plain (unsigned) policy document, YAML or JSON,
// strictly: at most MaxSize bytes, one YAML document, no unknown or
// duplicate field. It checks the format only; Parse also validates what the
// document says (names, keys, rules). source names the bytes in errors,
// which are ErrInvalid.
func DecodeDocument(data []byte, source string) (*Document, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, source, MaxSize)
	}
	if loc := docSepRE.FindIndex(data); loc != nil && len(bytes.TrimSpace(data[:loc[0]])) > 0 {
		return nil, invalid(source, "document", "more than one YAML document")
	}
	var d Document
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, source, oneLineError{err})
	}
	return &d, nil
}

// Marshal encodes the document as indented JSON (what Parse reads).
func (d *Document) Marshal() ([]byte, error) { return json.MarshalIndent(d, "", "  ") }

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)
	// labelRE is compiled on first use: its {0,251} repeat costs ~1 ms and
	// ~230 KB, which every start of the CLI would pay otherwise.
	labelRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9./_-]{0,251}[A-Za-z0-9])?$`)
	})
	// A YAML document separator after content: a multi-document stream,
	// whose later documents the YAML decoder would silently drop.
	docSepRE = regexp.MustCompile(`(?m)^---`)
)

// invalid is ErrInvalid naming source and field; format may wrap causes
// with %w.
func invalid(source, field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s: "+format, append([]any{ErrInvalid, source, field}, args...)...)
}

func parseDocument(data []byte, source string, signed bool, baseDir string) (*Policy, error) {
	d, err := DecodeDocument(data, source)
	if err != nil {
		return nil, err
	}
	if d.APIVersion != APIVersion {
		return nil, invalid(source, "apiVersion", "%q, want %q", d.APIVersion, APIVersion)
	}
	if d.Kind != Kind {
		return nil, invalid(source, "kind", "%q, want %q", d.Kind, Kind)
	}
	if !nameRE.MatchString(d.Metadata.Name) {
		return nil, invalid(source, "metadata.name", "%q is not a lower-case name", d.Metadata.Name)
	}
	p := &Policy{Name: d.Metadata.Name, byName: map[string]int{}, source: source}
	if d.Metadata.Version != nil {
		if *d.Metadata.Version < 1 {
			return nil, invalid(source, "metadata.version", "%d is not a positive integer", *d.Metadata.Version)
		}
		p.Version = *d.Metadata.Version
	}
	if len(d.Spec.Platforms) == 0 {
		return nil, invalid(source, "spec.platforms", "no platform declared")
	}
	byKey := map[string]string{}
	for i, pd := range d.Spec.Platforms {
		field := fmt.Sprintf("spec.platforms[%d]", i)
		if !nameRE.MatchString(pd.Name) {
			return nil, invalid(source, field+".name", "%q is not a lower-case name", pd.Name)
		}
		if _, dup := p.byName[pd.Name]; dup {
			return nil, invalid(source, field+".name", "duplicate platform %q", pd.Name)
		}
		field = fmt.Sprintf("spec.platforms[%d](%s)", i, pd.Name)
		for k := range pd.Labels {
			if !labelRE().MatchString(k) {
				return nil, invalid(source, field+".labels", "bad label key %q", k)
			}
		}
		pub, err := platformKey(pd.PublicKey, signed, baseDir)
		if err != nil {
			return nil, invalid(source, field+".publicKey", "%w", oneLineError{err})
		}
		fp, err := Fingerprint(pub)
		if err != nil {
			return nil, invalid(source, field+".publicKey", "%w", err)
		}
		if other, dup := byKey[fp]; dup {
			return nil, invalid(source, field+".publicKey", "same key as platform %q (%s): recipients would be ambiguous", other, fp)
		}
		byKey[fp] = pd.Name
		p.byName[pd.Name] = len(p.Platforms)
		p.Platforms = append(p.Platforms, Platform{Name: pd.Name, PublicKey: pub, Fingerprint: fp, Labels: pd.Labels})
	}
	if len(d.Spec.Artifacts) == 0 {
		return nil, invalid(source, "spec.artifacts", "no artifact rule declared")
	}
	seen := map[string]int{}
	for i, ad := range d.Spec.Artifacts {
		field := fmt.Sprintf("spec.artifacts[%d]", i)
		pat, err := compilePattern(ad.Match)
		if err != nil {
			return nil, invalid(source, field+".match", "%w", err)
		}
		key := strings.Join(pat.segs, "/")
		if j, dup := seen[key]; dup {
			return nil, invalid(source, field+".match", "%q repeats spec.artifacts[%d] and could never match", ad.Match, j)
		}
		seen[key] = i
		r := rule{pat: pat, encrypt: ad.Encrypt}
		used := map[string]bool{}
		for j, name := range ad.Platforms {
			pi, ok := p.byName[name]
			if !ok {
				return nil, invalid(source, fmt.Sprintf("%s.platforms[%d]", field, j), "unknown platform %q", name)
			}
			if used[name] {
				return nil, invalid(source, fmt.Sprintf("%s.platforms[%d]", field, j), "platform %q listed twice", name)
			}
			used[name] = true
			r.platforms = append(r.platforms, pi)
		}
		if ad.Encrypt && len(r.platforms) == 0 {
			return nil, invalid(source, field+".platforms", "encrypt is true but no platform may decrypt %q", ad.Match)
		}
		if !ad.Encrypt && len(r.platforms) > 0 {
			// Platforms of a rule published in the clear would mean nothing;
			// refuse rather than guess whether encryption was intended.
			return nil, invalid(source, field+".encrypt", "false, but platforms are listed: set encrypt: true, or list no platform for a public artifact")
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// platformKey resolves a publicKey field: an inline PEM block or JWK (a JSON
// string, or a JWK object), or — in an unsigned document only — a path
// relative to the document.
func platformKey(raw json.RawMessage, signed bool, baseDir string) (crypto.PublicKey, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("missing")
	}
	if raw[0] == '{' {
		return ParsePublicKey(raw)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, errors.New("must be a string (PEM, JWK or path) or a JWK object")
	}
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return nil, errors.New("empty")
	case strings.HasPrefix(t, "-----BEGIN") || strings.HasPrefix(t, "{"):
		return ParsePublicKey([]byte(t))
	case signed:
		return nil, fmt.Errorf("key path %q in a signed policy: the signature would not cover the key file; inline the key (policy.Sign does)", s)
	case baseDir == "":
		return nil, fmt.Errorf("key path %q but no base directory to resolve it against", s)
	}
	path := s
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("key file %s is larger than %d bytes", path, maxKeyFile)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return pub, nil
}

// oneLineError is a cause whose message is folded onto one line (YAML
// errors span lines), still unwrapping to the cause.
type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err) }
func (e oneLineError) Unwrap() error { return e.err }

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
