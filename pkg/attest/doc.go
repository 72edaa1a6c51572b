// Package attest turns a run.Record into in-toto evidence: one in-toto link
// per step (in-toto-golang's own types, so its tooling reads them) and one
// SLSA v1 provenance statement for the whole run.
package attest
