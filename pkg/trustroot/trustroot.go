package trustroot

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// Kinds of target, the first segment of their paths.
const (
	Layouts  = "layouts"
	Policies = "policies"
	Keys     = "keys"
	OCI      = "oci"
)

// PathOf is the target path of a short name of the given kind
// ("payments" → "layouts/payments.layout"); a name containing a slash is
// taken as a target path already.
func PathOf(kind, nm string) string {
	if strings.Contains(nm, "/") {
		return nm
	}
	switch kind {
	case Layouts:
		return Layouts + "/" + nm + ".layout"
	case Policies:
		return Policies + "/" + nm + ".policy"
	case Keys:
		return Keys + "/" + nm + ".pub"
	}
	return kind + "/" + nm
}

// ImagePath is the target path of an image tag:
// oci/<registry>/<repository>:<tag>.
func ImagePath(t name.Tag) string {
	return OCI + "/" + t.Context().RegistryStr() + "/" + t.Context().RepositoryStr() + ":" + t.TagStr()
}

// Root takes trust from a refreshed TUF client. It is safe for concurrent
// use, as the client is.
type Root struct {
	client *trust.Client
}

// New returns a Root on c, which the caller has refreshed (or loaded from
// its cache).
func New(c *trust.Client) *Root { return &Root{client: c} }

// Client is the TUF client the Root reads.
func (r *Root) Client() *trust.Client { return r.client }

// Document is a target file and who vouches for it.
type Document struct {
	Data []byte
	*trust.Resolution
}

// Describe names the document for messages: path, role, version.
func (d *Document) Describe() string {
	return fmt.Sprintf("%s (TUF role %s v%d)", d.Path, d.Role, d.RoleVersion)
}

// Owners are the signing verifiers of the keys the vouching role is
// delegated to, and the role's threshold: a document's owners.
func (d *Document) Owners() ([]signing.Verifier, int, error) {
	vs := make([]signing.Verifier, 0, len(d.Keys))
	for i, k := range d.Keys {
		v, err := signing.NewVerifier(k)
		if err != nil {
			return nil, 0, &trust.Error{Category: trust.ErrUnsupported, Role: d.Role, Version: d.RoleVersion, Path: d.Path,
				KeyIDs: []string{d.KeyIDs[i]}, Detail: "a key of the role cannot verify signatures", Err: err}
		}
		vs = append(vs, v)
	}
	return vs, d.Threshold, nil
}

// Fetch returns the target file at path, checked against its role.
func (r *Root) Fetch(ctx context.Context, path string) (*Document, error) {
	t, err := r.client.Fetch(ctx, path)
	if err != nil {
		return nil, err
	}
	return &Document{Data: t.Data, Resolution: t.Resolution}, nil
}

// Layout returns the layout of the pipeline nm (or at the target path nm),
// with its owners: the keys of the role TUF delegates the path to.
func (r *Root) Layout(ctx context.Context, nm string) (*Document, error) {
	return r.Fetch(ctx, PathOf(Layouts, nm))
}

// Policy returns the platform policy nm, verified: signed by the
// threshold of the keys of the role TUF delegates its path to (an unsigned
// policy is refused: anyone who can publish a target file could write
// one). Rollback is TUF's: only the version the role vouches for now is
// accepted.
func (r *Root) Policy(ctx context.Context, nm string) (*policy.Policy, *Document, error) {
	d, err := r.Fetch(ctx, PathOf(Policies, nm))
	if err != nil {
		return nil, nil, err
	}
	owners, threshold, err := d.Owners()
	if err != nil {
		return nil, nil, err
	}
	p, err := policy.Parse(d.Data, d.Describe(), policy.Options{Keys: owners, Threshold: threshold})
	if err != nil {
		return nil, nil, err
	}
	return p, d, nil
}

// ErrKeyFile: a keys/ target whose file is not one PEM public key.
var ErrKeyFile = errors.New("not a PEM public key")

// Key returns the public key nm (keys/<nm>.pub, or a target path).
func (r *Root) Key(ctx context.Context, nm string) (crypto.PublicKey, *Document, error) {
	d, err := r.Fetch(ctx, PathOf(Keys, nm))
	if err != nil {
		return nil, nil, err
	}
	pub, err := signing.ParsePublicKeyPEM(d.Data)
	if err != nil {
		return nil, nil, &trust.Error{Category: trust.ErrMalformed, Role: d.Role, Version: d.RoleVersion, Path: d.Path, Detail: ErrKeyFile.Error(), Err: err}
	}
	return pub, d, nil
}

// Image resolves an image tag to the digest TUF vouches for: the registry's
// answer for the tag must be the manifest digest and size the role
// vouches for at oci/<registry>/<repository>:<tag>
// (trust.ErrDigestMismatch naming both otherwise: a registry or a mirror
// serving another manifest for the tag), and the digest is used from
// then on. A reference by digest is refused: TUF vouches for tags.
func (r *Root) Image(ctx context.Context, c *oci.Client, ref name.Reference) (name.Digest, *trust.Resolution, error) {
	tag, ok := ref.(name.Tag)
	if !ok {
		return name.Digest{}, nil, &trust.Error{Category: trust.ErrUnsupported, Path: ref.String(),
			Detail: "TUF vouches for tags (oci/<registry>/<repository>:<tag>); give the tag, not a digest"}
	}
	path := ImagePath(tag)
	res, err := r.client.Resolve(ctx, path)
	if err != nil {
		return name.Digest{}, nil, err
	}
	d, size, err := c.Describe(ctx, tag)
	if err != nil {
		return name.Digest{}, nil, err
	}
	// VerifyArtifact's check, on the resolution already in hand.
	if hex := strings.TrimPrefix(d.DigestStr(), "sha256:"); !strings.EqualFold(hex, res.SHA256) || size != res.Length {
		return name.Digest{}, nil, &trust.Error{Category: trust.ErrDigestMismatch, Role: res.Role, Version: res.RoleVersion, Path: path,
			Detail: fmt.Sprintf("the registry serves %s (%d bytes) for %s, but TUF role %s v%d vouches for sha256:%s (%d bytes)",
				d.DigestStr(), size, tag, res.Role, res.RoleVersion, res.SHA256, res.Length)}
	}
	return d, res, nil
}

// Revocations is the vsa.RevocationLookup of the trust root: the layout at
// the TUF path the VSA's policy.uri names (vsa.PolicyURI), as TUF vouches
// for it now, and the key-revoked records of its readme (`stepseal layout
// revoke-key`); By names the layout's path, role and version. A policy.uri
// that is not a TUF path is vsa.ErrPolicyURI; TUF's errors are returned as
// they are (unreachable: reject.ErrUnableToCheck; no longer released: a
// refusal).
func (r *Root) Revocations(ctx context.Context, policyURI string) (*vsa.Revocations, error) {
	path, _, _, err := vsa.ParsePolicyURI(policyURI)
	if err != nil {
		return nil, err
	}
	d, err := r.Fetch(ctx, path)
	if err != nil {
		return nil, err
	}
	list, err := layout.Revocations(d.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Describe(), err)
	}
	out := &vsa.Revocations{By: d.Describe(), Keys: map[string]string{}}
	for _, rv := range list {
		out.Keys[rv.KeyID] = rv.Reason
	}
	return out, nil
}
