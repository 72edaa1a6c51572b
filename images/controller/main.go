package main

import (
	"knative.dev/pkg/injection/sharedmain"

	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/taskrun"
)

func main() {
	sharedmain.Main("stepseal-controller", taskrun.NewController, pipelinerun.NewController)
}
