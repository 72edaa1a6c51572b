package main

import (
	"context"
	"flag"
	"log"
	"time"

	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection/sharedmain"

	// sigstore's KMS providers, for signer.kms URIs (the four Chains and
	// cosign link in).
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/taskrun"
)

func main() {
	// The flag Tekton's and Chains' controllers have (default 2).
	flag.IntVar(&controller.DefaultThreadsPerController, "threads-per-controller", controller.DefaultThreadsPerController,
		"workers per controller (TaskRun, PipelineRun)")
	// One Shared for the process: both controllers use its signer cache,
	// open stores, stepseal-config and Secret informer.
	shared := lifecycle.NewShared()
	sharedmain.Main("stepseal-controller", taskrun.NewController(shared), pipelinerun.NewController(shared))
	// The controllers have stopped: release the stores (a tlog's lock,
	// its last checkpoint).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shared.Close(ctx); err != nil {
		log.Printf("closing stores: %v", err)
	}
}
