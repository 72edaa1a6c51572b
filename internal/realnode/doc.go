// Package realnode gives tests a real single-node Kubernetes running the real
// Tekton Pipelines controller: real Pods in runc containers (containerd), a
// scheduler, a kubelet, and images from a local registry, started by
// hack/kube/node-up.sh (make realnode starts it, runs the TestRealNode* tests
// and stops it).
//
// Tests find the node through the environment variable STEPSEAL_REALNODE,
// the node's directory (it holds kubeconfig and images.env). Get skips the
// test with a one-line reason when the variable is unset, so go test ./...
// stays fast and needs no root; make test sets it.
//
// Unlike internal/kubetest, nothing is faked here: Tekton creates the Pods,
// the kubelet runs them, and TaskRun statuses (step imageIDs, results) are
// what Tekton wrote. Only images in the node's registry can run (the node
// has no other network): Node.Image names them, for example Image("BUSYBOX").
package realnode
