package admission

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/trust"
)

// ErrNoTrustedKey: the trust source has no role vouching for the
// repository's images, so no key may sign them.
var ErrNoTrustedKey = reject.Sentinel(reject.ErrUnauthorized, "no TUF role vouches for the repository")

// TrustKeys is the KeySource over a refreshed TUF client: the keys trusted
// to sign a repository's images are those of the one role that vouches
// for its tags (targets oci/<registry>/<repository>:<tag>, the paths
// `stepseal publish --trust` and trustroot.Image use). A repository whose
// tags two roles list is refused: delegations must not overlap.
type TrustKeys struct{ Client *trust.Client }

// KeysFor returns the role's delegated keys.
func (k TrustKeys) KeysFor(ctx context.Context, repo string, _ *Rule) ([]crypto.PublicKey, error) {
	res, errs, err := k.Client.Targets(ctx, "oci/"+repo+":")
	if err != nil {
		return nil, err
	}
	roles := map[string]*trust.Resolution{}
	for _, r := range res {
		roles[r.Role] = r
	}
	switch len(roles) {
	case 0:
		if len(errs) > 0 {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoTrustedKey, repo, errors.Join(errs...))
		}
		msg := fmt.Sprintf("no role lists a tag of %s (oci/%s:<tag>)", repo, repo)
		if refused := k.Client.Status(ctx).Refused; len(refused) > 0 {
			var rs []string
			for role, why := range refused {
				rs = append(rs, role+": "+why)
			}
			sort.Strings(rs)
			msg += "; refused roles: " + strings.Join(rs, "; ")
		}
		return nil, fmt.Errorf("%w: %s", ErrNoTrustedKey, msg)
	case 1:
		for _, r := range roles {
			return r.Keys, nil
		}
	}
	var names []string
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%w: roles %s all list tags of %s", ErrNoTrustedKey, strings.Join(names, ", "), repo)
}

// Version names the client's verified state (root and snapshot versions):
// Config.TrustVersion, so a refresh that brings a revocation starts a new
// cache generation.
func (k TrustKeys) Version() string {
	f := k.Client.FloorOf()
	if f == nil {
		return ""
	}
	return fmt.Sprintf("root=%d,snapshot=%d", f.Versions["root"], f.Versions["snapshot"])
}
