package verify

import (
	"context"
	"fmt"
	"sync"

	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
)

// StoreLinks is a LinkSource reading the links of one run from a
// store.Store (any backend: a directory, the transparency log): the entries
// of kind store.KindLink whose run ID is RunID, under the names they were
// stored with. The store checks each entry's bytes against its digest (and,
// for the log, its inclusion) as it reads them; two links stored under one
// name are an error rather than a choice.
type StoreLinks struct {
	Store store.Store
	RunID string

	once  sync.Once
	links map[string][]byte
	err   error
}

func (s *StoreLinks) load(ctx context.Context) error {
	s.once.Do(func() {
		if s.RunID == "" {
			s.err = fmt.Errorf("verify: links from a store need the run ID to read")
			return
		}
		entries, err := s.Store.List(ctx, store.Filter{Kind: store.KindLink, RunID: s.RunID})
		if err != nil {
			s.err = fmt.Errorf("reading the links of run %s from the store: %w", s.RunID, err)
			return
		}
		s.links = make(map[string][]byte, len(entries))
		for _, e := range entries {
			if _, dup := s.links[e.Name]; dup {
				step, _, _ := seal.ParseLinkName(e.Name)
				s.err = &DuplicateLinkError{Step: step, File: e.Name, RunID: s.RunID}
				return
			}
			if len(e.Data) > MaxFileSize {
				s.err = fmt.Errorf("link %s: %w", e.Name, ErrTooLarge)
				return
			}
			s.links[e.Name] = e.Data
		}
	})
	return s.err
}

// LinkNames lists the names of the run's links in the store.
func (s *StoreLinks) LinkNames(ctx context.Context) ([]string, error) {
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(s.links))
	for n := range s.links {
		names = append(names, n)
	}
	return names, nil
}

// ReadLink returns the stored bytes of one of them.
func (s *StoreLinks) ReadLink(ctx context.Context, name string) ([]byte, error) {
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	b, ok := s.links[name]
	if !ok {
		return nil, fmt.Errorf("no link %s of run %s in the store", name, s.RunID)
	}
	return b, nil
}
