// Package localrun is stepseal's embedded default: it runs a Tekton v1
// Pipeline on this host, without a cluster, and records what every step did.
//
// Substitution, parameter validation, result passing, when expressions and
// what finally tasks see of the run ($(tasks.status), $(tasks.<t>.status),
// which finally tasks are skipped) are Tekton's own code (pipelinerun and
// taskrun resources); steps run as host processes (the image is recorded,
// not pulled), workspaces are directories, and each step's workspaces are
// hashed before and after it (pkg/artifact) so its signed in-toto link names
// its materials and products; steps run and are signed through pkg/record,
// the in-step equivalent of `in-toto run`.
package localrun
