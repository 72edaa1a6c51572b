package vsa

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/verify"
)

var (
	// ErrNoInputSigners: revocations are to be checked and an input of the
	// VSA does not say which keys signed it (a VSA made before
	// ExtInputSigners existed, or none listed at all): it cannot be shown
	// that no input was signed by a revoked key (reject.ErrMissing).
	ErrNoInputSigners = reject.Sentinel(reject.ErrMissing, "VSA input names no signer key IDs")
	// ErrPolicyURI: revocations are to be checked and policy.uri is not a
	// TUF layout ("tuf:<path>?role=<role>&version=<n>"), so there are no
	// revocation records to look in (reject.ErrUnsupported).
	ErrPolicyURI = reject.Sentinel(reject.ErrUnsupported, "VSA policy is not a layout released through TUF")
	// ErrRevokedInput matches every *RevokedInputError.
	ErrRevokedInput error = &RevokedInputError{}
)

// Revocations are the functionary keys a policy revokes now: what `stepseal
// layout revoke-key` records in a layout (attest.KeyRevocation), released
// through TUF.
type Revocations struct {
	// By names the policy that revokes them, with its version, e.g.
	// "layouts/app.layout (TUF role builds v3)".
	By string
	// Keys maps each revoked in-toto key ID to the reason recorded.
	Keys map[string]string
}

// RevocationLookup returns the revocations of the policy a VSA names
// (policy.uri, e.g. PolicyURI's), as the trust source has it now. An error
// keeps its reason: the trust source unreachable is reject.ErrUnableToCheck.
type RevocationLookup func(ctx context.Context, policyURI string) (*Revocations, error)

// RevokedInputError: an input attestation of the VSA is signed by a key the
// policy it names revokes now, although the verifier accepted it at
// timeVerified. Revocation is not time-bounded (everything the key signed
// stops counting, whenever it was signed), so the VSA no longer says what
// it said. It is the VSA form of verify.RevokedKeyError and matches it,
// reject.ErrUnauthorized and reject.ErrRefused.
type RevokedInputError struct {
	// Input is the input attestation's uri; Step the step of the link it
	// is, "" when it is not a link.
	Input, Step string
	// KeyID is the revoked in-toto key ID.
	KeyID string
	// By names the revoking policy and its version; Reason is the
	// revocation's reason.
	By, Reason string
	// TimeVerified is the VSA's timeVerified.
	TimeVerified time.Time
	// More counts the other inputs signed by a revoked key.
	More int
}

func (e *RevokedInputError) Error() string {
	what := "input " + e.Input
	if e.Step != "" {
		what = fmt.Sprintf("input %s (step %q)", e.Input, e.Step)
	}
	msg := fmt.Sprintf("VSA verified at %s: %s is signed by in-toto key %s, revoked by layout %s (reason: %s)",
		e.TimeVerified.UTC().Format(time.RFC3339), what, e.KeyID, e.By, e.Reason)
	if e.More > 0 {
		msg += fmt.Sprintf("; and %d more input(s) signed by revoked keys", e.More)
	}
	return msg
}

// Is matches ErrRevokedInput, verify.ErrRevokedKey (the family of "signed
// by a revoked key"), reject.ErrUnauthorized and reject.ErrRefused.
func (e *RevokedInputError) Is(target error) bool {
	switch target.(type) {
	case *RevokedInputError, *verify.RevokedKeyError:
		return true
	}
	return reject.Matches(reject.ErrUnauthorized, target)
}

// checkRevocations is Verify's step 9: every input names its signers, and
// none is revoked by the policy the VSA names, as lookup has it now.
func checkRevocations(ctx context.Context, v *Verified, lookup RevocationLookup) error {
	uri := v.Predicate.GetPolicy().GetUri()
	if _, _, _, err := ParsePolicyURI(uri); err != nil {
		return err
	}
	if len(v.Inputs) == 0 {
		return fmt.Errorf("%w: the VSA lists no input attestation", ErrNoInputSigners)
	}
	for _, in := range v.Inputs {
		if len(in.Signers) == 0 {
			return fmt.Errorf("%w: input %s has no %s field (a VSA of an older format: the verifier must sign a new one)", ErrNoInputSigners, in.URI, ExtInputSigners)
		}
	}
	revs, err := lookup(ctx, uri)
	if err != nil {
		return fmt.Errorf("revocations of %s: %w", uri, err)
	}
	if revs == nil || len(revs.Keys) == 0 {
		return nil
	}
	var first *RevokedInputError
	for _, in := range v.Inputs {
		for _, id := range in.Signers {
			reason, revoked := revs.Keys[id]
			if !revoked {
				continue
			}
			if first != nil {
				first.More++
				break
			}
			first = &RevokedInputError{Input: in.URI, Step: InputStep(in.URI), KeyID: id, By: revs.By, Reason: reason,
				TimeVerified: v.Predicate.GetTimeVerified().AsTime()}
			break
		}
	}
	if first != nil {
		return first
	}
	return nil
}

// InputStep is the step of the link an input uri names
// ("stepseal-store:<step>.<keyid8>.link…", a failed attempt's link too),
// or "" when it names no link.
func InputStep(uri string) string {
	name, ok := strings.CutPrefix(uri, StoreURIScheme)
	if !ok {
		return ""
	}
	name, _, _ = strings.Cut(name, "#")
	if step, _, _, ok := seal.ParseAttemptLinkName(name); ok {
		return step
	}
	if step, _, ok := seal.ParseLinkName(name); ok {
		return step
	}
	return ""
}

// ParsePolicyURI reads a policy uri PolicyURI wrote: the TUF target path,
// the role that vouched for it and the role's version. Anything else is
// ErrPolicyURI.
func ParsePolicyURI(uri string) (path, role string, version int64, err error) {
	bad := func(why string) (string, string, int64, error) {
		return "", "", 0, fmt.Errorf("%w: policy.uri %q: %s", ErrPolicyURI, uri, why)
	}
	rest, ok := strings.CutPrefix(uri, "tuf:")
	if !ok {
		return bad(`not "tuf:<path>?role=<role>&version=<n>"`)
	}
	path, query, ok := strings.Cut(rest, "?")
	if !ok || path == "" || strings.ContainsAny(path, "#\\") || strings.IndexFunc(path, isControl) >= 0 ||
		strings.HasPrefix(path, "/") || slices.Contains(strings.Split(path, "/"), "..") {
		return bad("no target path, or not a relative one")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad(err.Error())
	}
	if len(q) != 2 || len(q["role"]) != 1 || len(q["version"]) != 1 || q.Get("role") == "" {
		return bad("want exactly one role and one version")
	}
	if version, err = strconv.ParseInt(q.Get("version"), 10, 64); err != nil || version < 1 {
		return bad("version is not a positive integer")
	}
	if strings.IndexFunc(q.Get("role"), isControl) >= 0 {
		return bad("role has control characters")
	}
	return path, q.Get("role"), version, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// SignerKeyIDs returns the key IDs the signatures of a stored attestation
// name: an in-toto link (metablock {signed, signatures[].keyid}) or a DSSE
// envelope ({payload, payloadType, signatures[].keyid}), what a VSA lists
// as inputs. For a link the verifier checks each against the layout's
// keys; an attestation with no key ID, or one that is not an in-toto key
// ID (64 lower-case hex digits), is an error.
func SignerKeyIDs(data []byte) ([]string, error) {
	var doc struct {
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a signed attestation: %w", err)
	}
	var ids []string
	for _, s := range doc.Signatures {
		if !slices.Contains(ids, s.KeyID) {
			ids = append(ids, s.KeyID)
		}
	}
	if err := checkSigners(ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// checkSigners: at least one key ID, each an in-toto key ID, none twice.
func checkSigners(ids []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("no signer key ID")
	}
	for i, id := range ids {
		if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
			return fmt.Errorf("signer key ID %q is not an in-toto key ID (64 lower-case hex digits)", id)
		}
		if slices.Contains(ids[:i], id) {
			return fmt.Errorf("signer key ID %s listed twice", id)
		}
	}
	return nil
}

// takeSigners removes ExtInputSigners from each input object of a VSA
// predicate (which the in-toto Go type, parsed strictly, does not know)
// and returns them by input index; nil for an input without the field.
func takeSigners(pred *structpb.Struct) ([][]string, error) {
	list := pred.GetFields()["inputAttestations"].GetListValue().GetValues()
	out := make([][]string, len(list))
	for i, v := range list {
		obj := v.GetStructValue()
		f, ok := obj.GetFields()[ExtInputSigners]
		if !ok {
			continue
		}
		delete(obj.Fields, ExtInputSigners)
		l := f.GetListValue()
		if l == nil {
			return nil, fmt.Errorf("inputAttestations[%d]: %s is not a list", i, ExtInputSigners)
		}
		ids := make([]string, 0, len(l.GetValues()))
		for _, x := range l.GetValues() {
			s, ok := x.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, fmt.Errorf("inputAttestations[%d]: %s holds a value that is not a string", i, ExtInputSigners)
			}
			ids = append(ids, s.StringValue)
		}
		if err := checkSigners(ids); err != nil {
			return nil, fmt.Errorf("inputAttestations[%d]: %s: %w", i, ExtInputSigners, err)
		}
		out[i] = ids
	}
	return out, nil
}
