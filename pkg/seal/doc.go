// Package seal is the one seam between a recorded run and the evidence
// stepseal keeps of it: a run.Record becomes signed in-toto links (one per
// step and key) and a signed SLSA provenance, as named, digest-addressed
// store entries, stored links first and provenance last, reusing what an
// interrupted attempt already stored. The local runner (stepseal run and
// stepseal record) and both controllers seal runs through it, and it is the
// only place that builds and parses the names of links and provenances.
package seal
