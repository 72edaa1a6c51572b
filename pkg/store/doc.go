// Package store keeps in-toto metadata (links, layouts, DSSE envelopes) and
// finds it again by the digest of a subject it speaks about.
//
// Store is the interface every backend implements; DirStore keeps entries in
// a directory. Later backends (OCI referrers, the transparency log, Tekton
// annotations) must pass the same conformance suite, storetest.Run.
package store
