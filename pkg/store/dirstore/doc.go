// Package dirstore is the store.Store backend that keeps entries in a plain
// directory: one data file and one metadata file per entry, and empty marker
// files indexing entries by subject and by run. It needs no daemon and no
// log; every read re-hashes the data, so a changed entry is store.ErrCorrupt.
package dirstore
