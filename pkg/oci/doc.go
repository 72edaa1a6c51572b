// Package oci publishes artifacts — a file, a directory, an OCI image layout
// or an image tarball — to any OCI image-spec registry with
// go-containerregistry, streamed in constant memory, and fetches them back by
// digest with every blob's digest checked. It attaches signatures and
// attestations where cosign looks for them (sha256-<hex>.sig / .att) and as
// OCI 1.1 referrers, and verifies them by digest, failing closed with typed
// errors that match pkg/reject's reasons.
//
// A Client (New) validates its options once and reuses one transport and
// go-containerregistry's Puller and Pusher across calls; the package-level
// functions make a Client per call.
package oci
