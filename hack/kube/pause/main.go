// Command pause is the sandbox ("pause") container image of the real test node
// (hack/kube/build-node.sh): it holds a pod's namespaces open and does nothing
// until it is told to stop. Like upstream's pause it reaps orphaned children,
// since it is PID 1 of pods that share their process namespace.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
