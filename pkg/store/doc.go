// Package store keeps in-toto metadata (links, layouts, DSSE envelopes) and
// finds it again by the digest of a subject it speaks about.
//
// Store is the interface every backend implements; each backend is its own
// subpackage (pkg/store/dirstore keeps entries in a directory,
// pkg/store/tlogstore in a transparency log, pkg/store/pgstore in PostgreSQL
// tables bound to a transparency log), so importing the interface
// pulls in no backend. Every backend (and later ones: OCI referrers, Tekton
// annotations) must pass the same conformance suite, storetest.Run.
//
// Optional capabilities are small interfaces next to Store, found with a type
// assertion: IndexedPutter (a store that appends to a transparency log and
// reports the log index of each entry), Pager (List a page at a time) and
// Closer (a store holding a lock, files, connections or a background
// checkpointer until closed).
package store
