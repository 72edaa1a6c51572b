// Package pipelinerun is the controller that attests finished PipelineRuns:
// once every child TaskRun is stepseal.dev/signed=true (signed by package
// taskrun), it signs SLSA v1 provenance of the whole run that names each
// child's stored links and provenance by digest, stores it in every backend
// and annotates the PipelineRun the way TaskRuns are annotated. It resolves
// keys and backends through the TaskRun controller's taskrun.Shared, so both
// controllers of a process share one signer cache, one set of open stores
// and one stepseal-config.
package pipelinerun
