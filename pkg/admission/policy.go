package admission

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"os"
	"regexp"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// APIVersion and Kind of an admission policy document.
const (
	APIVersion = "stepseal.dev/v1alpha1"
	Kind       = "AdmissionPolicy"
	// MaxPolicySize caps a policy document.
	MaxPolicySize = 1 << 20
)

// Requirement classes a rule can demand of the images it covers.
const (
	// RequireVSA: a SLSA VSA by the configured verifier, PASSED, for this
	// digest (checked by a VSAChecker).
	RequireVSA = "vsa"
	// RequireSigned: a cosign signature by one of the rule's keys naming
	// this digest.
	RequireSigned = "signed"
	// RequireDigest: the digest is one of the rule's pinned digests
	// (Tekton's injected images, infrastructure), no registry contact.
	RequireDigest = "digest"
)

// Modes of a rule.
const (
	ModeEnforce = "enforce"
	ModeWarn    = "warn"
)

// Document is an admission policy as written (YAML or JSON).
type Document struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Rules      []RuleDoc `json:"rules"`
}

// RuleDoc is one rule as written.
type RuleDoc struct {
	Name string `json:"name"`
	// Images are repository globs with the platform policy's semantics.
	Images  []string `json:"images"`
	Require string   `json:"require"`
	Mode    string   `json:"mode,omitempty"`
	// Keys are PEM public keys (signed).
	Keys []string `json:"keys,omitempty"`
	// KeysFrom "trust": the keys come from the Decider's KeySource (the
	// TUF role that owns the image's path) rather than from Keys.
	KeysFrom string `json:"keysFrom,omitempty"`
	// Digests are "sha256:<hex>" (digest).
	Digests []string `json:"digests,omitempty"`
	// Platforms may run the rule's encrypted images.
	Platforms []string `json:"platforms,omitempty"`
	VSA       *VSADoc  `json:"vsa,omitempty"`
}

// VSADoc is a rule's VSA requirement as written.
type VSADoc struct {
	// Verifier is the verifier identity (verifier.id) the VSA must carry.
	Verifier string `json:"verifier"`
	// MaxAge bounds now - timeVerified ("24h").
	MaxAge string `json:"maxAge,omitempty"`
	// Key is the verifier's PEM public key.
	Key string `json:"key,omitempty"`
	// Layout names the TUF layout target (layouts/<name>.layout) whose
	// current digest the VSA must be bound to; without it any layout's VSA
	// is taken (a layout rolled back or substituted is then not seen).
	Layout string `json:"layout,omitempty"`
}

// Policy is a parsed, validated admission policy: rules tried in order,
// the first whose image glob matches an image's repository decides.
type Policy struct {
	Rules []Rule
	// Digest is "sha256:" and the hex SHA-256 of the document bytes.
	Digest string
}

// Rule is one validated rule.
type Rule struct {
	Name    string
	Images  []policy.Glob
	Require string
	Mode    string
	Keys    []crypto.PublicKey
	// FromTrust: keys come from the Decider's KeySource.
	FromTrust bool
	Digests   map[string]bool
	Platforms []string
	VSA       VSARequirement
}

// VSARequirement is what a "vsa" rule asks of a VSA.
type VSARequirement struct {
	Verifier string
	MaxAge   time.Duration
	Key      crypto.PublicKey
	Layout   string
}

// Match returns the first rule covering repo (normalized with
// policy.Repository).
func (p *Policy) Match(repo string) (*Rule, bool) {
	for i := range p.Rules {
		for _, g := range p.Rules[i].Images {
			if g.Match(repo) {
				return &p.Rules[i], true
			}
		}
	}
	return nil, false
}

// LoadPolicy reads and parses a policy file.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	return ParsePolicy(data)
}

var (
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	nameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)
)

// ParsePolicy decodes a policy strictly (unknown fields, duplicate rule
// names, unknown requirement classes and modes, bad globs, keys and
// digests are all refused with ErrInvalidPolicy naming the rule).
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidPolicy, MaxPolicySize)
	}
	var doc Document
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if doc.APIVersion != APIVersion || doc.Kind != Kind {
		return nil, fmt.Errorf("%w: apiVersion/kind must be %s/%s, not %q/%q", ErrInvalidPolicy, APIVersion, Kind, doc.APIVersion, doc.Kind)
	}
	if len(doc.Rules) == 0 {
		return nil, fmt.Errorf("%w: no rules", ErrInvalidPolicy)
	}
	p := &Policy{Digest: fmt.Sprintf("sha256:%x", sha256.Sum256(data))}
	seen := map[string]bool{}
	for i, rd := range doc.Rules {
		r, err := parseRule(rd)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d (%q): %w", ErrInvalidPolicy, i, rd.Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("%w: rule %d: duplicate name %q", ErrInvalidPolicy, i, r.Name)
		}
		seen[r.Name] = true
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

func parseRule(rd RuleDoc) (Rule, error) {
	r := Rule{Name: rd.Name, Require: rd.Require, Mode: rd.Mode, Platforms: rd.Platforms}
	if !nameRE.MatchString(r.Name) {
		return r, fmt.Errorf("name must be a DNS label")
	}
	if r.Mode == "" {
		r.Mode = ModeEnforce
	}
	if r.Mode != ModeEnforce && r.Mode != ModeWarn {
		return r, fmt.Errorf("mode must be %s or %s, not %q", ModeEnforce, ModeWarn, r.Mode)
	}
	if len(rd.Images) == 0 {
		return r, fmt.Errorf("no images")
	}
	for _, s := range rd.Images {
		g, err := policy.CompileGlob(s)
		if err != nil {
			return r, err
		}
		r.Images = append(r.Images, g)
	}
	for _, pl := range rd.Platforms {
		if pl == "" {
			return r, fmt.Errorf("empty platform name")
		}
	}
	switch r.Require {
	case RequireSigned:
		switch {
		case rd.KeysFrom == "trust" && len(rd.Keys) == 0:
			r.FromTrust = true
		case rd.KeysFrom != "":
			return r, fmt.Errorf("keysFrom must be \"trust\" (and then no keys), not %q", rd.KeysFrom)
		case len(rd.Keys) == 0:
			return r, fmt.Errorf("require: signed needs keys or keysFrom: trust")
		}
		for k, pem := range rd.Keys {
			pub, err := signing.ParsePublicKeyPEM([]byte(pem))
			if err != nil {
				return r, fmt.Errorf("key %d: %w", k, err)
			}
			r.Keys = append(r.Keys, pub)
		}
	case RequireDigest:
		if len(rd.Digests) == 0 {
			return r, fmt.Errorf("require: digest needs digests")
		}
		r.Digests = map[string]bool{}
		for _, d := range rd.Digests {
			if !digestRE.MatchString(d) {
				return r, fmt.Errorf("digest %q is not sha256:<64 lower-case hex>", d)
			}
			r.Digests[d] = true
		}
	case RequireVSA:
		if rd.VSA == nil || rd.VSA.Verifier == "" {
			return r, fmt.Errorf("require: vsa needs vsa.verifier")
		}
		r.VSA.Verifier = rd.VSA.Verifier
		if rd.VSA.MaxAge != "" {
			d, err := time.ParseDuration(rd.VSA.MaxAge)
			if err != nil || d <= 0 {
				return r, fmt.Errorf("vsa.maxAge %q is not a positive duration", rd.VSA.MaxAge)
			}
			r.VSA.MaxAge = d
		}
		if rd.VSA.Key != "" {
			pub, err := signing.ParsePublicKeyPEM([]byte(rd.VSA.Key))
			if err != nil {
				return r, fmt.Errorf("vsa.key: %w", err)
			}
			r.VSA.Key = pub
		}
		r.VSA.Layout = rd.VSA.Layout
	default:
		return r, fmt.Errorf("require must be %s, %s or %s, not %q", RequireVSA, RequireSigned, RequireDigest, r.Require)
	}
	if r.Require != RequireSigned && (len(rd.Keys) > 0 || rd.KeysFrom != "") || r.Require != RequireDigest && len(rd.Digests) > 0 || r.Require != RequireVSA && rd.VSA != nil {
		return r, fmt.Errorf("keys, digests and vsa belong to require: signed, digest and vsa only")
	}
	return r, nil
}
