package run

import "strings"

// The artifact names a cluster-signed link (controllers/taskrun) gives
// Tekton results, shared with the layout generator (pkg/layout/generate),
// which writes rules for exactly these names.
const (
	// TaskResultPrefix + name: a TaskRun result, a product of the last
	// step that ran.
	TaskResultPrefix = "results/"
	// StepResultPrefix + "<step>/results/<name>": a step result, a
	// product of that step.
	StepResultPrefix = "steps/"
)

// TaskResultName is the artifact name of TaskRun result r.
func TaskResultName(r string) string { return TaskResultPrefix + r }

// StepResultName is the artifact name of result r of step step (the step's
// name in the TaskRun's status, without the pipeline task).
func StepResultName(step, r string) string { return StepResultPrefix + step + "/results/" + r }

// Tekton Chains' type hints in result names that mark outputs and inputs
// (chains v0.26.3 pkg/artifacts). The artifacts they name are recorded
// under names known only at run time: an image by its repository, an
// artifact by its URI.
const (
	HintImageURL        = "IMAGE_URL"
	HintImageDigest     = "IMAGE_DIGEST"
	HintImages          = "IMAGES"
	HintArtifactURI     = "ARTIFACT_URI"
	HintArtifactDigest  = "ARTIFACT_DIGEST"
	HintArtifactOutputs = "ARTIFACT_OUTPUTS"
	HintArtifactInputs  = "ARTIFACT_INPUTS"
)

// HintsOutput reports whether a result named r may carry an output named at
// run time: *IMAGE_URL (with *IMAGE_DIGEST), IMAGES, *ARTIFACT_URI (with
// *ARTIFACT_DIGEST) or *ARTIFACT_OUTPUTS.
func HintsOutput(r string) bool {
	return strings.HasSuffix(r, HintImageURL) || r == HintImages ||
		strings.HasSuffix(r, HintArtifactURI) || strings.HasSuffix(r, HintArtifactOutputs)
}

// HintsInput reports whether a result named r may carry an input named at
// run time (*ARTIFACT_INPUTS).
func HintsInput(r string) bool { return strings.HasSuffix(r, HintArtifactInputs) }
