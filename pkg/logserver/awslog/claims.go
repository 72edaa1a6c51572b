package awslog

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // the database/sql driver of the DSN
	"github.com/transparency-dev/tessera"
)

// claimStale is how long a claim whose owner has not recorded an index
// holds: after it, another replica takes the document over (the owner
// died between claiming and sequencing it, or between sequencing it and
// recording the index; in that case the log gets a second leaf, which
// every index resolves to the first).
const claimStale = 10 * time.Second

// claims make one replica the appender of each entry: the first to insert
// the entry's identity hash (Tessera's: SHA-256 of the leaf) into a table
// with that hash as its primary key appends it and records the index; a
// replica that finds the row waits for the index and answers it as a
// duplicate. This is a tessera.Antispam, so it decorates the appender's
// Add, but unlike Tessera's own (best effort, filled by an asynchronous
// follower) it holds for documents two replicas receive at the same
// instant: the database's unique key decides.
type claims struct {
	db   *sql.DB
	poll time.Duration
}

func newClaims(ctx context.Context, dsn string) (*claims, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS StepsealClaim (
		h BINARY(32) NOT NULL PRIMARY KEY,
		idx BIGINT UNSIGNED NULL,
		claimed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
	)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("claims table: %w", err)
	}
	return &claims{db: db, poll: 25 * time.Millisecond}, nil
}

func (c *claims) Close() error { return c.db.Close() }

// Decorator implements tessera.Antispam.
func (c *claims) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(delegate tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			// Claim at once, as Tessera's Add sequences at once; the
			// future waits for the outcome.
			type result struct {
				idx tessera.Index
				err error
			}
			ch := make(chan result, 1)
			go func() {
				idx, err := c.add(ctx, e, delegate)
				ch <- result{idx, err}
			}()
			return sync.OnceValues(func() (tessera.Index, error) {
				r := <-ch
				return r.idx, r.err
			})
		}
	}
}

// add appends e if this replica wins its claim, else waits for the
// winner's index.
func (c *claims) add(ctx context.Context, e *tessera.Entry, delegate tessera.AddFn) (tessera.Index, error) {
	h := e.Identity()
	res, err := c.db.ExecContext(ctx, `INSERT IGNORE INTO StepsealClaim (h) VALUES (?)`, h)
	if err != nil {
		return tessera.Index{}, fmt.Errorf("claiming entry %x: %w", h[:8], err)
	}
	for {
		if n, err := res.RowsAffected(); err != nil {
			return tessera.Index{}, err
		} else if n == 1 {
			return c.own(ctx, h, e, delegate)
		}
		var idx sql.NullInt64
		var stale bool
		err := c.db.QueryRowContext(ctx, `SELECT idx, claimed_at < NOW(3) - INTERVAL ? MICROSECOND FROM StepsealClaim WHERE h = ?`,
			claimStale.Microseconds(), h).Scan(&idx, &stale)
		if err != nil {
			return tessera.Index{}, fmt.Errorf("reading the claim of entry %x: %w", h[:8], err)
		}
		if idx.Valid {
			return tessera.Index{Index: uint64(idx.Int64), IsDup: true}, nil
		}
		if stale {
			// Take the claim over: only one replica's UPDATE matches.
			if res, err = c.db.ExecContext(ctx, `UPDATE StepsealClaim SET claimed_at = NOW(3)
				WHERE h = ? AND idx IS NULL AND claimed_at < NOW(3) - INTERVAL ? MICROSECOND`, h, claimStale.Microseconds()); err != nil {
				return tessera.Index{}, fmt.Errorf("taking over the claim of entry %x: %w", h[:8], err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return tessera.Index{}, ctx.Err()
		case <-time.After(c.poll):
		}
		res = zeroRows{}
	}
}

// own appends e and records its index; on failure it releases the claim.
func (c *claims) own(ctx context.Context, h []byte, e *tessera.Entry, delegate tessera.AddFn) (tessera.Index, error) {
	idx, err := delegate(ctx, e)()
	// Record or release even if the writer has gone: others wait on it.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err != nil {
		_, _ = c.db.ExecContext(bg, `DELETE FROM StepsealClaim WHERE h = ? AND idx IS NULL`, h)
		return idx, err
	}
	// The entry is sequenced: answer it even if recording the index
	// fails; others then take the claim over once it is stale (a second
	// leaf, resolved by the index).
	_, _ = c.db.ExecContext(bg, `UPDATE StepsealClaim SET idx = ? WHERE h = ? AND idx IS NULL`, idx.Index, h)
	return idx, nil
}

// zeroRows is the result of not inserting: the claim is another's.
type zeroRows struct{}

func (zeroRows) LastInsertId() (int64, error) { return 0, nil }
func (zeroRows) RowsAffected() (int64, error) { return 0, nil }

// Follower implements tessera.Antispam: claims are recorded as entries are
// appended, so there is nothing to follow.
func (c *claims) Follower(func([]byte) ([][]byte, error)) tessera.Follower {
	return &idleFollower{}
}

type idleFollower struct {
	lr atomic.Pointer[tessera.LogReader]
}

func (*idleFollower) Name() string { return "stepseal claims" }

func (f *idleFollower) Follow(ctx context.Context, lr tessera.LogReader) {
	f.lr.Store(&lr)
	<-ctx.Done()
}

func (f *idleFollower) EntriesProcessed(ctx context.Context) (uint64, error) {
	if lr := f.lr.Load(); lr != nil {
		return (*lr).IntegratedSize(ctx)
	}
	return 0, nil
}
