package logserver

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/stepseal/stepseal/pkg/store"
)

// Remote is a store.Store whose entries are in a served log: what `verify
// --from` reads links from and what the controller's "logserver" backend
// writes to. Every read is a Client read (each answer's checkpoint and
// inclusion verified); a Put posts the document and checks that the server
// derived what the writer stored: the same digest and kind (the server
// derives kind, run, name and subjects itself and believes nothing else, so
// a provenance is named by its predicate type, not by the writer's name).
type Remote struct {
	Client *Client
}

var (
	_ store.Store         = (*Remote)(nil)
	_ store.IndexedPutter = (*Remote)(nil)
	_ store.Checkpointer  = (*Remote)(nil)
)

// LogCheckpoint implements store.Checkpointer: the largest checkpoint the
// client verified (after a Put, one that covers it), else the server's
// current one.
func (r *Remote) LogCheckpoint(ctx context.Context) ([]byte, error) {
	if cp, ok := r.Client.Log().Latest(); ok {
		return cp.Raw, nil
	}
	cp, err := r.Client.Log().Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Raw, nil
}

// Put posts e's document and returns its digest.
func (r *Remote) Put(ctx context.Context, e store.Entry) (string, error) {
	d, _, err := r.PutIndexed(ctx, e)
	return d, err
}

// PutIndexed posts e's document and returns its digest and log index, once
// the server's answer verified. A document already in the log answers its
// existing index.
func (r *Remote) PutIndexed(ctx context.Context, e store.Entry) (string, uint64, error) {
	if err := store.Validate(&e); err != nil {
		return "", 0, err
	}
	v, err := r.Client.Add(ctx, e.Data)
	if err != nil {
		return "", 0, fmt.Errorf("%s %s: %w", e.Kind, e.Name, err)
	}
	if v.Entry.Kind != e.Kind {
		return "", 0, fmt.Errorf("%w: %s %s (%s) was logged as a %s", ErrAnswer, e.Kind, e.Name, e.Digest, v.Entry.Kind)
	}
	return v.Entry.Digest, v.Index, nil
}

// Fetch returns the entry with digest; store.ErrNotFound if the log holds
// none.
func (r *Remote) Fetch(ctx context.Context, digest string) (store.Entry, error) {
	v, err := r.Client.Get(ctx, digest)
	if errors.Is(err, ErrNotFound) {
		return store.Entry{}, fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	if err != nil {
		return store.Entry{}, err
	}
	return v.Entry, nil
}

// Get returns the entries naming subject, ordered by digest;
// store.ErrNotFound when there are none.
func (r *Remote) Get(ctx context.Context, subject string) ([]store.Entry, error) {
	out, err := r.List(ctx, store.Filter{Subject: subject})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no entry in the log names subject %s", store.ErrNotFound, subject)
	}
	return out, nil
}

// List returns every entry passing f, ordered by digest, each read through a
// verified search. A document logged twice (it cannot be: appends are
// idempotent on its digest) would be returned once.
func (r *Remote) List(ctx context.Context, f store.Filter) ([]store.Entry, error) {
	var out []store.Entry
	seen := map[string]bool{}
	_, err := r.Client.SearchAll(ctx, Query{Subject: f.Subject, Kind: f.Kind, RunID: f.RunID}, 0, MaxLimit, func(res VerifiedResult) error {
		if !seen[res.Entry.Digest] {
			seen[res.Entry.Digest] = true
			out = append(out, res.Entry)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}
