// Package resources is the part of Tekton Pipelines'
// pkg/reconciler/pipelinerun/resources (v1.15.1) that stepseal's local
// runner uses: apply.go, resultrefresolution.go, validate_params.go and
// pipelinerunstate.go copied unchanged, pipelinerunresolution.go without the
// functions that fetch Tasks and Pipelines from a cluster or a resolver
// (ResolvePipelineTask and its helpers), ResolvedPipeline without its
// trusted-resources field, and MissingKeysObjectParamNames from
// pkg/reconciler/taskrun. The upstream package imports the TaskRun
// reconciler, the Kubernetes clients, trusted resources and every cloud KMS
// SDK, which each start of the stepseal CLI would pay for. upstream_test.go
// checks that this copy and the upstream package give the same results;
// update both together with the Tekton version in go.mod.
package resources
