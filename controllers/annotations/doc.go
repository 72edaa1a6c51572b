// Package annotations names what the stepseal controllers write on Tekton
// objects: the stepseal.dev/* annotations that say whether and how a run was
// signed, and the finalizers that hold a run until it is. The controllers,
// their tests, internal/kubetest and anything that reads a run's outcome
// (the admission webhook, benchmarks) use these constants instead of string
// literals.
package annotations
