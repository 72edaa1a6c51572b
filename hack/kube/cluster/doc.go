// Command cluster is the Go half of hack/kube/start.sh: it starts etcd and
// kube-apiserver with Tekton's CRDs through internal/kubetest, leaves them
// running after it exits, and prints the kubeconfig path.
//
// Usage: go run ./hack/kube/cluster DIR
package main
