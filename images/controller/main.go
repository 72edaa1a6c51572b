package main

import (
	"knative.dev/pkg/injection/sharedmain"

	// sigstore's KMS providers, for signer.kms URIs (the four Chains and
	// cosign link in).
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"

	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/taskrun"
)

func main() {
	sharedmain.Main("stepseal-controller", taskrun.NewController, pipelinerun.NewController)
}
