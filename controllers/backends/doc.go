// Package backends is what the controllers store attestations in, once
// opened: a Backend is a store.Store (the "dir", "tlog" and "postgres"
// backends) or an ImageAttacher (the "oci" backend, OCI; the "rekor" backend, Rekor,
// a KeyedAttacher given the signer's key through Backend.AttachImage), and Stores keeps a
// process's open stores by directory (a tlog directory can be opened once
// per process; a postgres store by its DSN file, log directory and the
// file's content) and closes them. Which backends exist, their ConfigMap
// keys and how each is opened is the one table in package settings,
// settings.BackendKinds.
package backends
