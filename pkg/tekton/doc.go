// Package tekton loads Tekton v1 Pipeline, PipelineRun and TaskRun files
// with tektoncd/pipeline's own types and validation: multi-document files
// holding the run, its Pipeline, Tasks and StepActions and the ConfigMaps, Secrets and
// PersistentVolumeClaims its workspaces bind. It resolves each pipeline task
// to its TaskSpec, hands what a run file binds (params, workspaces,
// timeouts, ConfigMap and Secret files) on as data (Spec.Run), and orders
// pipeline tasks the way Tekton's DAG schedules them. Both the layout
// generator and the local runner read pipelines through it, so they agree
// on steps, ordering and workspaces.
package tekton
