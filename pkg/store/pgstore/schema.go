package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order, each once; schemaVersion records how many
// ran. Never edit one that shipped: append a new one.
var migrations = []string{
	// 1: entries, their subjects, indexes for List by kind and run.
	`CREATE TABLE stepseal_entries (
		digest    bytea  PRIMARY KEY,
		kind      text   NOT NULL,
		name      text   NOT NULL,
		run_id    text   NOT NULL,
		data      bytea  NOT NULL,
		log_index bigint NOT NULL
	);
	CREATE INDEX stepseal_entries_kind ON stepseal_entries (kind, digest);
	CREATE INDEX stepseal_entries_run ON stepseal_entries (run_id, digest);
	CREATE TABLE stepseal_subjects (
		subject bytea NOT NULL,
		digest  bytea NOT NULL REFERENCES stepseal_entries (digest),
		PRIMARY KEY (subject, digest)
	);
	CREATE INDEX stepseal_subjects_digest ON stepseal_subjects (digest);`,
	// 2: a row of a store on a served log is written before its document
	// is appended (an intent, log_index NULL) and completed after, so that
	// a writer killed in between leaves bytes a retry reuses.
	`ALTER TABLE stepseal_entries ALTER COLUMN log_index DROP NOT NULL;`,
}

// migrateLock is the advisory lock key that serialises migrations of
// replicas starting together ("stepseal" in ASCII).
const migrateLock = 0x7374657073656164

// migrate brings the schema to the newest version, in one transaction.
func migrate(ctx context.Context, tx pgx.Tx) (from, to int, err error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return 0, 0, err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS stepseal_schema (version integer NOT NULL)`); err != nil {
		return 0, 0, err
	}
	var v int
	err = tx.QueryRow(ctx, `SELECT version FROM stepseal_schema`).Scan(&v)
	switch {
	case err == pgx.ErrNoRows:
		if _, err := tx.Exec(ctx, `INSERT INTO stepseal_schema (version) VALUES (0)`); err != nil {
			return 0, 0, err
		}
	case err != nil:
		return 0, 0, err
	}
	if v > len(migrations) {
		return v, v, fmt.Errorf("the database's schema is version %d, this stepseal knows up to %d (a newer stepseal migrated it)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return v, i, fmt.Errorf("schema migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE stepseal_schema SET version = $1`, len(migrations)); err != nil {
		return v, v, err
	}
	return v, len(migrations), nil
}
