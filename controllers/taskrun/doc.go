// Package taskrun is the controller that attests every step of every finished
// Tekton TaskRun: it builds a run.Record from the TaskRun's status
// (FromTaskRun), signs one in-toto link per step and SLSA v1 provenance for the
// TaskRun, stores them in every configured backend, and only then annotates
// the TaskRun stepseal.dev/signed=true.
//
// The package has no package-level mutable state. What the controllers of
// one process share — the signer cache (a cosign key is decrypted once), the
// open stores, the live stepseal-config, the informer of Secrets of the
// system namespace and the metrics instruments — is a Shared, made once by
// the process (NewShared, in images/controller's main) and passed to
// NewController and pipelinerun.NewController; tests make their own. Which
// backends exist and how each is opened is the table settings.BackendKinds.
package taskrun
