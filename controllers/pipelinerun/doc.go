// Package pipelinerun is the controller that attests finished PipelineRuns:
// its Kind plugs PipelineRuns into the signing lifecycle of package
// lifecycle, and its Attest, once every child TaskRun is
// stepseal.dev/signed=true (signed by package taskrun), signs SLSA v1
// provenance of the whole run that names each child's stored links and
// provenance by digest and stores it in every backend. Keys and backends
// come from the same lifecycle.Signing as the TaskRun controller's, so both
// controllers of a process share one signer cache, one set of open stores
// and one stepseal-config.
//
// With vsa.enabled it then verifies the run's links against the layout the
// controller's TUF trust root releases for the pipeline and signs a SLSA
// VSA of the outcome with the verifier key of the controller's own
// namespace (see Kind.summarize): what admission trusts instead of
// re-verifying every link.
package pipelinerun
