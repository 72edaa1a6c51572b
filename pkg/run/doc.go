// Package run describes what a finished build run did, independent of Tekton.
//
// A Record is the seam of stepseal: the controller builds one from a TaskRun's
// status, the local runner from what it executed, and everything downstream
// (attest, sign, store, verify) only ever sees Records, links and envelopes.
package run
