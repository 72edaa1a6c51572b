// Command stepseal signs every step of a Tekton Pipeline as an in-toto link,
// generates and signs in-toto layouts from Pipelines, runs Pipelines locally,
// and verifies the result. It is also the image every stepseal Task runs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/stepseal/stepseal/images/stepseal/cmd"
)

func main() {
	// Libraries below (Tessera, client-go) log through klog; the CLI reports
	// through its own output and errors.
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.New().ExecuteContext(ctx)
	stop()
	if err != nil {
		if !cmd.IsReported(err) {
			fmt.Fprintln(os.Stderr, "stepseal:", cmd.OneLine(err))
		}
		os.Exit(1)
	}
}
