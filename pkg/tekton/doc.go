// Package tekton loads Tekton v1 Pipelines and Tasks from YAML files with
// tektoncd/pipeline's own types, resolves each pipeline task to its TaskSpec
// (inline taskSpec or a referenced Task file), and orders pipeline tasks the
// way Tekton's DAG schedules them. Both the layout generator and the local
// runner read pipelines through it, so they agree on steps and ordering.
package tekton
