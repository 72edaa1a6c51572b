// Package lifecycle is the signing lifecycle of a Tekton run, written once
// for every kind the controllers seal (TaskRun, PipelineRun, and later the
// admission reconciler's): a Reconciler[T] drives it, a small Kind[T] says
// how to read, patch and attest objects of one kind, the way tektoncd/chains
// serves both kinds with one TektonObject.
//
// One reconcile of the key of an object of kind T:
//
//  1. Leader check: nothing happens unless this replica leads the key's
//     bucket (two replicas must never both sign: ECDSA signatures differ, so
//     both copies would be stored) and the object is still in the cache.
//     A decided object (stepseal.dev/signed is true or failed) only has a
//     left-over finalizer removed.
//  2. Finalizer from first sight: an object not being deleted gets the
//     kind's finalizer as soon as the controller sees it, running or not, so
//     one deleted right after it finishes — before its turn in the queue —
//     is still signed.
//  3. Wait until done: an object still running is left until its next
//     update; one deleted before it finished has the finalizer removed again,
//     unsigned (nothing ran to the end, and holding it would block the
//     deletion for ever).
//  4. Attest and store: Kind.Attest signs and stores the object's evidence
//     in every backend, reusing what an interrupted earlier attempt stored.
//     An Attest that returns a requeue (Wait: what it attests is not ready,
//     e.g. a PipelineRun's children are not signed yet) is requeued without
//     counting an attempt.
//  5. Annotate: only then stepseal.dev/signed=true (and
//     stepseal.dev/log-index when a transparency log gave one), the error
//     and retry count removed, the finalizer removed, the signed metric and
//     latency recorded.
//  6. Retry or give up: a failure Kind.Permanent calls permanent, or the
//     last of max-retries, is given up — a Warning Event SigningFailed, then
//     signed=failed with the error and the attempt count, the finalizer
//     removed, the failed metric; any other is retried after the configured
//     exponential backoff (the retries metric).
//
// Every patch is a JSON merge patch guarded by the object's resourceVersion
// (MetaPatch), so a concurrent change makes it fail and the key is retried.
//
// What the controllers of one process share — the signer cache, the open
// stores, the live stepseal-config, the informer of Secrets of the system
// namespace and the metrics instruments — is a Shared, made once by the
// process (NewShared, in images/controller's main) and passed to every
// controller's constructor; Signing resolves a namespace's signer and opens
// the configured backends from it. The package has no package-level mutable
// state.
//
// To add a kind: implement Kind[T] for it (Get and List from its lister,
// Patch through its clientset, IsDone, CompletedAt, Attest, Permanent), make
// its Reconciler with New(k, c.Config, c.Recorder, c.Metrics) from
// Shared.Common, and NewImpl it over the kind's informer.
package lifecycle
