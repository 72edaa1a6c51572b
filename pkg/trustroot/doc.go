// Package trustroot is stepseal's one trust root: the layouts, platform
// policies and keys every verifier uses, and the images it accepts, taken
// from one TUF repository (pkg/trust) instead of local files.
//
// Conventions for target paths (PathOf expands a short name):
//
//	layouts/<pipeline>.layout    the owner-signed layout bytes, unchanged
//	policies/<name>.policy       the owner-signed platform policy (DSSE), unchanged
//	keys/<name>.pub              a PEM public key (a publisher's, a functionary's)
//	oci/<registry>/<repo>:<tag>  a released artifact: its manifest digest and size
//
// The owners of a layout or a policy are the keys of the TUF role that
// vouches for its path, with that role's threshold: whoever TUF delegates
// layouts/payments.layout to is who may sign the payments layout, so
// rotating or revoking an owner is one TUF change. Messages name TUF key
// IDs (sha256 of the canonical TUF key) as "TUF key" and in-toto key IDs
// as "in-toto key"; the two conventions differ for the same key.
//
// A Root never falls back to local files: a target TUF does not vouch for,
// a file that does not match, or a repository that cannot be reached is an
// error (pkg/trust's typed errors), never a reason to look elsewhere.
package trustroot
