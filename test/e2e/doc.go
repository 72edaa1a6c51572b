// Package e2e holds end-to-end tests of the stepseal CLI: they build the
// binary, run the examples on this host, and check the verdicts against
// in-toto-golang's own CLI (installed by hack/install-test-deps.sh).
package e2e
