// Package store keeps in-toto metadata (links, layouts, DSSE envelopes) and
// finds it again by the digest of a subject it speaks about.
//
// Store is the interface every backend implements; DirStore keeps entries in
// a directory. Later backends (OCI referrers, the transparency log, Tekton
// annotations) must pass the same conformance suite, storetest.Run.
//
// Optional capabilities are small interfaces next to Store, found with a type
// assertion: IndexedPutter (a store that appends to a transparency log and
// reports the log index of each entry, pkg/store/tlogstore) and Closer (a
// store holding a lock, files or a background checkpointer until closed).
package store
