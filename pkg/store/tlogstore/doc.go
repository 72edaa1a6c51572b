// Package tlogstore is the store.Store backend over stepseal's transparency
// log (pkg/tlog): every Put appends a canonical record of the entry (kind,
// name, run, subjects, digest and, when it fits, the data) to the log, and
// every read re-verifies the record's inclusion against the current signed
// checkpoint, so an answer that was changed on disk is store.ErrCorrupt (and
// a log or blob that cannot be read at all store.ErrUnavailable).
//
// It lives beside pkg/store rather than in it so that importing the Store
// interface does not pull in Tessera. The query index next to the log is a
// cache: one line per log entry, rebuilt from the log on Open where it is
// short, torn or missing.
package tlogstore
