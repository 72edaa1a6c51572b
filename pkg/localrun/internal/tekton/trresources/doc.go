// Package resources is the part of Tekton Pipelines'
// pkg/reconciler/taskrun/resources (v1.15.1) that stepseal's local runner
// uses to substitute a TaskRun's parameters, contexts, results and
// workspaces into its Task: apply.go and validate_params.go copied
// unchanged, ResolvedTask without its trusted-resources field, and
// pkg/pod's StepName. The upstream package also resolves remote Tasks and so
// links in the Kubernetes clients, trusted resources and every cloud KMS SDK,
// which each start of the stepseal CLI would pay for. upstream_test.go
// checks that this copy and the upstream package give the same results;
// update both together with the Tekton version in go.mod.
package resources
