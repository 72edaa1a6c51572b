package annotations

// Annotations the controllers write on TaskRuns and PipelineRuns.
const (
	// Signed is SignedTrue once every backend accepted the run's
	// attestations, SignedFailed once signing was given up.
	Signed = "stepseal.dev/signed"
	// Error is the last error, on a run given up (at most 1 KiB).
	Error = "stepseal.dev/error"
	// Retries is the number of failed attempts, on a run given up.
	Retries = "stepseal.dev/retries"
	// LogIndex is the transparency-log index of a run's provenance (of its
	// last entry when it has no provenance), set with Signed=true when a
	// "tlog" backend is configured.
	LogIndex = "stepseal.dev/log-index"
	// LogCheckpoint is the log's signed checkpoint (a C2SP note) covering
	// LogIndex, as the controller verified it: gossip that `stepseal log
	// monitor --gossip` compares with the tree the log shows others.
	LogCheckpoint = "stepseal.dev/log-checkpoint"
	// VSA is the digest ("sha256:<hex>") of the verification summary
	// (SLSA VSA) the PipelineRun controller signed for a run, set with
	// Signed=true when vsa.enabled; comma-separated when the run published
	// images to several repositories (one VSA per repository).
	VSA = "stepseal.dev/vsa"
	// TaskRun names the child TaskRun on a byproduct descriptor of a
	// PipelineRun's provenance (an annotation of the descriptor, not of an
	// object).
	TaskRun = "stepseal.dev/taskrun"
)

// Values of Signed.
const (
	SignedTrue   = "true"
	SignedFailed = "failed"
)

// Finalizers hold a run from the moment the controller sees it until it is
// signed (or given up), so a run deleted right after it finishes is still
// signed.
const (
	FinalizerTaskRun     = "stepseal.dev/taskrun"
	FinalizerPipelineRun = "stepseal.dev/pipelinerun"
)

// IsDecided reports whether annotations mark a run signed or given up.
func IsDecided(annotations map[string]string) bool {
	s := annotations[Signed]
	return s == SignedTrue || s == SignedFailed
}
