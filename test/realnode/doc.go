// Package realnode holds end-to-end tests on the real node
// (internal/realnode, hack/kube/node-up.sh) that cross packages: the
// admission webhook (pkg/admission) called over TLS by the node's real
// kube-apiserver while the real kubelet runs, or fails to pull, what it
// admitted; encrypted images decrypted by containerd's ctd-decoder with the
// node's key; Tekton failing a TaskRun whose Pod the webhook refused; and
// the walk-through in examples/admission-walkthrough. Every test is a
// TestRealNode* test and skips without STEPSEAL_REALNODE.
package realnode
