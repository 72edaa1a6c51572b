// Package taskrun is the controller that attests every step of every finished
// Tekton TaskRun: its Kind plugs TaskRuns into the signing lifecycle of
// package lifecycle, and its Attest builds a run.Record from the TaskRun's
// status (FromTaskRun), signs one in-toto link per step and SLSA v1
// provenance for the TaskRun, and stores them in every configured backend;
// only then does the lifecycle annotate the TaskRun stepseal.dev/signed=true.
//
// The package has no package-level mutable state: what the controllers of
// one process share is a lifecycle.Shared, passed to NewController. Slim is
// the informer transform of both run kinds.
package taskrun
