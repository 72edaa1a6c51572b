package admission

import (
	"context"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/stepseal/stepseal/pkg/reject"
)

// CacheOptions size a Cache.
type CacheOptions struct {
	// Size bounds the entries (least recently used evicted); 1024 when 0.
	Size int
	// TTL keeps an admitted image's verdict; 5 minutes when 0.
	TTL time.Duration
	// NegativeTTL keeps a refusal, shorter so a fix (a signature pushed
	// late) is seen soon; 30 seconds when 0. A failure to check (registry
	// down, deadline) is never kept.
	NegativeTTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// OnLookup, when set, is told whether each lookup found a live
	// verdict (Metrics.CacheLookup).
	OnLookup func(hit bool)
}

// Cache keeps verdicts per (digest, rule, trust version, platform, policy)
// and runs one check per key at a time: concurrent requests for the same
// new digest share one set of registry fetches. A new trust version is a
// new key, so a revocation takes effect on the next request.
type Cache struct {
	o   CacheOptions
	lru *lru.Cache[cacheKey, entry]
	sf  singleflight.Group
}

type cacheKey struct {
	digest, rule, trust, platform, policy string
}

func (k cacheKey) String() string {
	return fmt.Sprintf("%s|%s|%s|%s|%s", k.digest, k.rule, k.trust, k.platform, k.policy)
}

// verdict is what a check found beyond pass/fail.
type verdict struct {
	encrypted bool
}

type entry struct {
	v       verdict
	err     error
	expires time.Time
}

// NewCache returns an empty cache.
func NewCache(o CacheOptions) *Cache {
	if o.Size <= 0 {
		o.Size = 1024
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l, err := lru.New[cacheKey, entry](o.Size)
	if err != nil {
		panic(err) // only for a non-positive size, excluded above
	}
	return &Cache{o: o, lru: l}
}

func (c *Cache) lookup(hit bool) {
	if c.o.OnLookup != nil {
		c.o.OnLookup(hit)
	}
}

// Len is the number of entries kept.
func (c *Cache) Len() int { return c.lru.Len() }

// do returns the kept verdict for k, or runs check once for all callers
// asking for k meanwhile. check runs detached from any one caller's
// cancellation but bounded by ctx's deadline; a caller whose ctx ends
// first gets ErrDeadline.
func (c *Cache) do(ctx context.Context, k cacheKey, check func(context.Context) (verdict, error)) (verdict, error) {
	if e, ok := c.lru.Get(k); ok && c.o.Now().Before(e.expires) {
		c.lookup(true)
		return e.v, e.err
	}
	c.lookup(false)
	ch := c.sf.DoChan(k.String(), func() (any, error) {
		if e, ok := c.lru.Get(k); ok && c.o.Now().Before(e.expires) {
			return e, nil
		}
		cctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			cctx, cancel = context.WithDeadline(cctx, dl)
			defer cancel()
		}
		v, err := check(cctx)
		if err != nil && cctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrDeadline, err)
		}
		e := entry{v: v, err: err}
		switch {
		case err == nil:
			e.expires = c.o.Now().Add(c.o.TTL)
			c.lru.Add(k, e)
		case errors.Is(err, reject.ErrRefused) && !errors.Is(err, reject.ErrUnableToCheck):
			e.expires = c.o.Now().Add(c.o.NegativeTTL)
			c.lru.Add(k, e)
		}
		return e, nil
	})
	select {
	case r := <-ch:
		e := r.Val.(entry)
		return e.v, e.err
	case <-ctx.Done():
		return verdict{}, ErrDeadline
	}
}
