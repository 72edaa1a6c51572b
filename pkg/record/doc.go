// Package record is stepseal's `in-toto run`: Command hashes a step's
// materials, runs its command as a host process, hashes its products and
// writes one signed in-toto link per key. It is the in-step recorder of
// `stepseal record` and the step runner pkg/localrun builds on. It also
// holds the keyless measurements of `stepseal record start|stop` (Measure,
// Emit, ParseMeasurement, FindMeasurement): the record StepActions measure a
// user's step in its Pod and the controller signs. It links none of
// Tekton's packages, so the lean stepseal binary carries it.
package record
