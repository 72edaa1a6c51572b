// Command stepseal-tekton is the part of stepseal that links Tekton's own
// packages: the full stepseal command tree, with `stepseal run` (the
// embedded default, pkg/embedded over pkg/embedded/tektonrun) and `stepseal
// layout create` (pkg/layout/generate) implemented, and `stepseal admission
// serve --policy-configmap` (pkg/admission/incluster: client-go's clientset
// and knative's controllers), and `stepseal log serve --storage aws`
// (pkg/logserver/awslog: Tessera's AWS driver and the AWS SDK). The stepseal binary
// execs it, with the same arguments, for those commands, so that its
// other commands start without Tekton's types, reconciler packages and the
// cloud SDKs they pull in. Install it next to stepseal or on PATH; run
// directly, it behaves as stepseal.
package main

import (
	"github.com/stepseal/stepseal/images/stepseal/cmd"
	"github.com/stepseal/stepseal/pkg/admission/incluster"
	"github.com/stepseal/stepseal/pkg/embedded/tektonrun"
	"github.com/stepseal/stepseal/pkg/logserver/awslog"
)

func main() {
	cmd.Main(tektonrun.Tekton{}, cmd.WithInCluster(incluster.Run), cmd.WithAWSLog(awslog.Open))
}
