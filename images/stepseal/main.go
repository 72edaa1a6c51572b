// Command stepseal signs every step of a Tekton Pipeline as an in-toto link,
// generates and signs in-toto layouts from Pipelines, runs Pipelines locally,
// and verifies the result. It is also the image every stepseal Task runs.
//
// It is built without Tekton's packages, so that each start costs only what
// the command needs: `stepseal run`, `stepseal layout create` and `stepseal
// admission serve --policy-configmap` exec
// stepseal-tekton (images/stepseal-tekton), the same command tree built with
// them, found next to this executable or on PATH.
package main

import "github.com/stepseal/stepseal/images/stepseal/cmd"

func main() { cmd.Main(nil) }
