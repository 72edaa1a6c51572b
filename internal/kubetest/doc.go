// Package kubetest runs a real Kubernetes API for integration tests: etcd
// (v3.6.5 built by hack/kube/build-etcd.sh, data on tmpfs) and a kube-apiserver built from the
// Go modules by hack/kube/build-apiserver.sh, with Tekton's v1 CRDs applied.
// There is no kubelet, scheduler or Tekton controller, so tests create TaskRuns
// and PipelineRuns and fake their completion with FinishTaskRun and
// FinishPipelineRun, then wait for the controllers' outcome with
// WaitTaskRunSigned, WaitPipelineRunSigned, WaitTaskRunsSigned or a
// SignedWatch (exactly-once checks).
//
// One cluster is shared by all tests of a test binary (started by the first
// Start, about 4 s): call Main from TestMain, Start from each test, and
// Namespace for a fresh namespace per test:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
//	func TestSigns(t *testing.T) {
//		c := kubetest.Start(t)
//		ns := c.Namespace(t)
//		tekton := versioned.NewForConfigOrDie(c.Config())
//		tr, _ := tekton.TektonV1().TaskRuns(ns).Create(ctx, taskRun, metav1.CreateOptions{})
//		tr, err := kubetest.FinishTaskRun(ctx, tekton, tr, kubetest.FinishOptions{})
//		...
//	}
//
// hack/kube/start.sh runs the same cluster detached, for use by hand.
//
// The first write of each Tekton kind takes about 2 s after start (the
// apiserver builds a CRD's validators lazily; warming all of them up in Start
// cost more than it saved), so benchmarks should create one object of each
// kind they measure before starting the clock.
package kubetest
