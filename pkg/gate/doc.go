// Package gate is what a verifier inside a pipeline needs beyond pkg/verify:
// Wait, a bounded wait (with backoff) until the links of every step a gate
// verifies are in the log, since the controller signs a TaskRun only after
// it finished; and the outcome as Tekton results (Outcome, Summary,
// WriteResults): a VERDICT of PASSED, FAILED or ERROR ("could not check")
// and a one-line JSON summary that always fits a result (under 1 KiB).
// It never decides anything pkg/verify did not: a wait that ends with links
// missing is verified anyway, and the verdict names the missing steps.
package gate
