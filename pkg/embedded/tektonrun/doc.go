// Package tektonrun implements embedded.Tekton with Tekton's own packages:
// pkg/tekton loads the Pipeline, pkg/layout/generate makes its layout and
// pkg/localrun runs it on this host. Only programs that run pipelines link
// it (stepseal-tekton, the tests).
package tektonrun
