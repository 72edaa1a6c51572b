// Package embedded is stepseal's embedded default, the workflow behind
// `stepseal run`: a Tekton Pipeline run on this host, sealed, verified and
// published without a cluster. Run carries it out as numbered steps (see
// Run), one function each; the CLI only parses flags and prints what Run
// reports.
package embedded
