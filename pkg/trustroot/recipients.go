package trustroot

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/reject"
)

// Released is a released artifact (an oci/… target) and who can decrypt
// the digest TUF vouches for, against a platform policy.
type Released struct {
	Path        string `json:"path"`
	Ref         string `json:"ref"`
	Role        string `json:"role"`
	RoleVersion int64  `json:"roleVersion"`
	Encrypted   bool   `json:"encrypted"`
	// Platforms of the policy that can decrypt it; UnknownKeys recipient
	// keys of no platform of the policy (a platform removed from it).
	Platforms   []string `json:"platforms,omitempty"`
	UnknownKeys []string `json:"unknownKeys,omitempty"`
	// Mismatch says how its recipients differ from what the policy allows
	// for its repository (empty: they are exactly the rule's platforms).
	Mismatch string `json:"mismatch,omitempty"`
	// Error: the artifact could not be checked (registry, no rule, …).
	Error string `json:"error,omitempty"`
}

// AuditRecipients checks every released artifact TUF vouches for (every
// oci/<registry>/<repository>:<tag> target of every role) against pol: the
// recipients of the vouched digest (read from its manifest, no key
// needed) must be exactly the platforms pol's rule names. It returns every
// artifact, with Mismatch set on those whose recipients differ — after a
// platform is removed from the policy, the artifacts still encrypted to
// it, which `stepseal crypt rotate` re-encrypts (and whose new digest the
// owning team then releases). Paths TUF refuses are returned as errors.
func (r *Root) AuditRecipients(ctx context.Context, c *oci.Client, pol *policy.Policy) ([]Released, []error, error) {
	res, refused, err := r.client.Targets(ctx, OCI+"/")
	if err != nil {
		return nil, nil, err
	}
	var out []Released
	for _, t := range res {
		rel := Released{Path: t.Path, Role: t.Role, RoleVersion: t.RoleVersion}
		repoTag := strings.TrimPrefix(t.Path, OCI+"/")
		i := strings.LastIndex(repoTag, ":")
		if i < 0 || strings.Contains(repoTag[i:], "/") {
			rel.Error = "not an oci/<registry>/<repository>:<tag> path"
			out = append(out, rel)
			continue
		}
		d, err := c.ParseDigest(repoTag[:i] + "@sha256:" + t.SHA256)
		if err != nil {
			rel.Error = err.Error()
			out = append(out, rel)
			continue
		}
		rel.Ref = d.String()
		rr, err := publish.Recipients(ctx, c, d, pol)
		if err != nil {
			rel.Error = err.Error()
			out = append(out, rel)
			continue
		}
		rel.Encrypted = len(rr.Recipients) > 0
		rel.Platforms, rel.UnknownKeys = rr.Platforms, rr.UnknownKeys
		if rr.Mismatch != nil {
			rel.Mismatch = rr.Mismatch.Error()
		}
		out = append(out, rel)
	}
	return out, refused, nil
}

// Stale are the released artifacts whose recipients differ from the
// policy.
func Stale(rs []Released) []Released {
	var out []Released
	for _, r := range rs {
		if r.Mismatch != "" {
			out = append(out, r)
		}
	}
	return out
}

// ErrStaleRecipients: released artifacts whose recipients are not what the
// policy allows (a platform removed, and the artifact not re-encrypted).
var ErrStaleRecipients = reject.Sentinel(reject.ErrPolicy, "released artifacts encrypted to other platforms than the policy allows")

// StaleError names the stale artifacts.
func StaleError(pol *policy.Policy, stale []Released) error {
	if len(stale) == 0 {
		return nil
	}
	var names []string
	for _, s := range stale {
		names = append(names, s.Path)
	}
	return fmt.Errorf("%w: policy %q version %d: %s", ErrStaleRecipients, pol.Name, pol.Version, strings.Join(names, ", "))
}
