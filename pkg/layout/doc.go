// Package layout turns a Tekton Pipeline into an in-toto layout: one layout
// step per Task step, the functionaries allowed to perform it (from a
// Functionaries file), and artifact rules derived from how the pipeline's tasks
// share workspaces. Owners sign the layout; Describe prints it for people.
//
// The rules are plain in-toto rules (MATCH, ALLOW, DISALLOW, REQUIRE), so
// in-toto-golang's own verifier and pkg/verify reach the same verdict on them.
package layout
