// Package taskrun is the controller that attests every step of every finished
// Tekton TaskRun: it builds a run.Record from the TaskRun's status
// (FromTaskRun), signs one in-toto link per step and SLSA v1 provenance for the
// TaskRun, stores them in every configured backend, and only then annotates
// the TaskRun stepseal.dev/signed=true.
package taskrun
