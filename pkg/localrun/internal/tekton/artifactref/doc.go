// Package artifactref is Tekton Pipelines' internal/artifactref (v1.15.1),
// copied unchanged because an internal package cannot be imported from
// stepseal; trresources needs it.
package artifactref
