// Package version reports what a stepseal binary was built from: its version,
// the commit and Go toolchain, and the versions of the libraries whose
// behaviour decides verdicts (Tekton, in-toto, Sigstore, go-containerregistry,
// ocicrypt, Tessera). The CLI's `stepseal version` and the controller print it.
package version
