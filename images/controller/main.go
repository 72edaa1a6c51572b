package main

import (
	"context"
	"flag"
	"log"
	"os"
	"time"

	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/injection/sharedmain"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/system"

	// sigstore's KMS providers, for signer.kms URIs (the four Chains and
	// cosign link in).
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/ordinal"
	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/taskrun"
)

const component = "stepseal-controller"

func main() {
	// The flag Tekton's and Chains' controllers have (default 2).
	flag.IntVar(&controller.DefaultThreadsPerController, "threads-per-controller", controller.DefaultThreadsPerController,
		"workers per controller (TaskRun, PipelineRun)")
	// One Shared for the process: both controllers use its signer cache,
	// open stores, stepseal-config and Secret informer.
	shared := lifecycle.NewShared()
	sharedmain.Main(component, checkOrdinal(taskrun.NewController(shared)), pipelinerun.NewController(shared))
	// The controllers have stopped: release the stores (a tlog's lock,
	// its last checkpoint).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shared.Close(ctx); err != nil {
		log.Printf("closing stores: %v", err)
	}
}

// checkOrdinal runs ctor after checking the StatefulSet mode
// (controllers/config/optional/statefulset): sharedmain has read
// config-leader-election and built the electors, no informer has started,
// and nothing is reconciled before the first constructor returns. A replica
// whose ordinal has no bucket, or whose StatefulSet's replicas differ from
// the buckets, exits instead of running (knative would fall back to Leases,
// or leave buckets unreconciled).
func checkOrdinal(ctor injection.ControllerConstructor) injection.ControllerConstructor {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		logger := logging.FromContext(ctx)
		le, err := sharedmain.GetLeaderElectionConfig(ctx)
		if err != nil {
			logger.Fatalw("StatefulSet mode: reading the leader-election configuration", "error", err)
		}
		buckets := le.GetComponentConfig(component).Buckets
		m, err := ordinal.Check(ctx, kubeclient.Get(ctx), system.Namespace(), buckets, os.Getenv)
		if err != nil {
			logger.Fatalw("refusing to start", "error", err)
		}
		if m != nil {
			logger.Infof("StatefulSet mode: replica %d of StatefulSet %s reconciles bucket %d of %d, no Leases", m.Ordinal, m.StatefulSet, m.Ordinal, buckets)
		}
		return ctor(ctx, cmw)
	}
}
