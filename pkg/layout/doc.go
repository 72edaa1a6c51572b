// Package layout is stepseal's in-toto layout file: the Functionaries file
// (who may perform which step), signing, writing, loading and validating a
// layout, and Describe, which prints it for people. It links none of
// Tekton's packages; generating a layout from a Tekton Pipeline is
// pkg/layout/generate.
//
// The rules are plain in-toto rules (MATCH, ALLOW, DISALLOW, REQUIRE), so
// in-toto-golang's own verifier and pkg/verify reach the same verdict on them.
package layout
