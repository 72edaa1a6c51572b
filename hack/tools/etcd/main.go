// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain) at
// the version kube-apiserver v1.35 is built and tested with. hack/kube uses
// it instead of Debian's etcd-server 3.4.23 when it is built: 3.4.23 lacks
// the RequestWatchProgress support kube-apiserver needs to serve streaming
// lists (WatchList), so every informer falls back to one LIST of everything
// — which is not what a controller meets on a current cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
