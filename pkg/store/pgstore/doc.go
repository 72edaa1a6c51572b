// Package pgstore is the store.Store backend on PostgreSQL, for controller
// replicas that share one store: documents, their subjects and runs live in
// indexed tables (reads are paginated, store.Pager), writes are idempotent
// on the document's digest and union the subjects as pkg/store/tlogstore
// does, and the schema is migrated on Open.
//
// Tamper evidence comes from the transparency log, not from the database:
// Put appends the entry's record to a pkg/tlog log (the same record format
// tlogstore writes, without the document) before it writes the row, each row
// keeps its log index, and every read re-verifies the record's inclusion
// against the log's signed checkpoint and the row against the record. A row
// edited behind the store's back is store.ErrCorrupt (ErrRowMismatch); a
// database or log that cannot be reached is store.ErrUnavailable, and a Put
// that gets it stored nothing the caller may rely on.
//
// The log is a pkg/tlog directory every replica reaches (Open), or a served
// log (`stepseal log serve`) every replica reaches over HTTP (OpenServed):
// then the document itself is appended, the served log derives its kind,
// run and subjects, and reads check the row against what the log derived.
package pgstore
