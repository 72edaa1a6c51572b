// Command controller is stepseal's in-cluster controller: knative's sharedmain
// running the TaskRun controller (controllers/taskrun), which signs a link per
// step and SLSA provenance for every finished TaskRun. Set SYSTEM_NAMESPACE to
// the namespace holding stepseal-config and the signing Secret.
package main
