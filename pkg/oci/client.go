package oci

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Client is registry access configured once: New validates the options and
// builds the transport (the insecure guard over one connection pool) and a
// go-containerregistry Puller and Pusher, which every operation of the
// Client reuses (remote.Reuse), so the push → sign → attest → tag sequence
// pings each registry and exchanges each repository's token once instead
// of once per call.
//
// A Client is safe for concurrent use. It caches per-repository
// credentials and which blobs it has uploaded for as long as it lives; use
// one per workflow (a CLI command, a reconcile) or, for reads only, one per
// process.
type Client struct {
	o         *options
	transport http.RoundTripper
	base      []remote.Option
	puller    *remote.Puller
	pusher    *remote.Pusher
}

// New returns a Client for opts. Options are checked here, once: a bad one
// is an error from New, not from the first operation.
func New(opts ...Option) (*Client, error) {
	o := makeOptions(opts)
	if o.jobs < 1 {
		return nil, fmt.Errorf("oci: WithJobs(%d): at least one concurrent transfer is needed", o.jobs)
	}
	base := o.transport
	if base == nil {
		base = remote.DefaultTransport
	}
	c := &Client{o: o, transport: &manifestCap{next: &guard{strict: base, loose: looseTransport(base), insecure: o.insecure}, max: MaxManifestBytes}}
	c.base = []remote.Option{remote.WithTransport(c.transport), remote.WithJobs(o.jobs)}
	if o.auth != nil {
		c.base = append(c.base, remote.WithAuth(o.auth))
	} else {
		c.base = append(c.base, remote.WithAuthFromKeychain(o.keychain))
	}
	var err error
	if c.puller, err = remote.NewPuller(c.base...); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	if c.pusher, err = remote.NewPusher(c.base...); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	return c, nil
}

// remoteOptions are the go-containerregistry options of one operation: its
// context, and the shared Puller and Pusher (reads go through the one,
// writes through the other).
func (c *Client) remoteOptions(ctx context.Context) []remote.Option {
	return append(c.base[:len(c.base):len(c.base)], remote.WithContext(ctx), remote.Reuse(c.puller), remote.Reuse(c.pusher))
}

// progressOptions are the options of an upload that reports progress to
// updates. go-containerregistry closes a progress channel when one push
// ends, so such an upload gets its own Pusher; it still shares the
// Client's transport and with it the connections.
func (c *Client) progressOptions(ctx context.Context, updates chan<- v1.Update) []remote.Option {
	if updates == nil {
		return c.remoteOptions(ctx)
	}
	return append(c.base[:len(c.base):len(c.base)], remote.WithContext(ctx), remote.Reuse(c.puller), remote.WithProgress(updates))
}

// ParseReference is ParseReference with the Client's options.
func (c *Client) ParseReference(s string) (name.Reference, error) { return parseReference(s, c.o) }

// ParseDigest is ParseDigest with the Client's options.
func (c *Client) ParseDigest(s string) (name.Digest, error) { return parseDigest(s, c.o) }
