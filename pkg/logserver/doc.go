// Package logserver serves stepseal's transparency log over HTTP: writers
// POST a signed document (a DSSE envelope or an in-toto link or layout),
// the server derives its kind, run and subjects itself, checks its signature
// against an allow-list of keys, appends it once per document digest and
// answers with its index, a checkpoint and an inclusion proof. Readers get
// the log's static tlog-tiles files, entries by digest, and a search by
// subject digest, kind or run with an inclusion proof per result.
//
// The search index lives in an embedded bbolt database and follows the log
// from a watermark committed in the same transaction as its rows, so its
// memory does not grow with the log, a restart only catches up, and a
// crash between an append and the index commit loses nothing. Client
// verifies every answer with the log's public key; Audit rebuilds the index
// from the log alone and proves a server's search answers complete.
package logserver
