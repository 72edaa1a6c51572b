// Package controllertest holds the fixtures the controller tests share: a
// Fixture with a fake Tekton clientset whose TaskRuns and PipelineRuns are
// copied into listers as an informer would, a signing Secret, a directory
// store that can be made to fail, settings, metrics and an Event recorder;
// and checks of what was stored (VerifyStored). Completion of runs is faked
// with internal/kubetest's FinishedStatus; the real-apiserver loops (wait
// until signed, watch signed transitions) are in internal/kubetest.
package controllertest
