// Command controller is stepseal's in-cluster controller: knative's sharedmain
// running the TaskRun controller (controllers/taskrun), which signs a link per
// step and SLSA provenance for every finished TaskRun, and the PipelineRun
// controller (controllers/pipelinerun), which signs run-level provenance once
// all of a PipelineRun's TaskRuns are signed. Both share one lifecycle.Shared
// (signer cache, open stores, stepseal-config, Secret informer), made here
// and closed once they stop. Set SYSTEM_NAMESPACE to the namespace holding
// stepseal-config and the signing Secret.
package main
