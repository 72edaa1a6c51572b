// Package catalog holds the end-to-end tests of stepseal's Tekton catalog
// that need more than its static checks (go test ./stepaction): the
// stepseal-publish Task in a real Pod on a real node (TestRealNode*, skipped
// without STEPSEAL_REALNODE), and Tekton Chains v0.26.3's own SLSA v1.0
// formatter (v2alpha4) reading a publish TaskRun — recorded from the real
// node in testdata/ — to find the published artifact as its subject.
package catalog
