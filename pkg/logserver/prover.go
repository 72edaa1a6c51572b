package logserver

import (
	"context"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// maxProverNodes bounds the prover's memo (about 100 bytes a node); past
// it the memo starts again empty.
const maxProverNodes = 1 << 17

// prover builds inclusion proofs for every answer of a server. Tessera's
// client.ProofBuilder is one tree size's, not safe for concurrent use, and
// rebuilds each node above the tile's leaves from them for every proof
// (255 hashes per tile level): under an append burst every writer built a
// builder, read the tiles from disk and hashed the same nodes. The prover
// keeps the hashes of complete subtrees instead, which never change in an
// append-only tree (a node the proof needs covers only entries below the
// tree size), and reads a tile only for a node it has not seen. Every proof
// it builds is still verified against the checkpoint's root before it is
// served, so a wrong node can only cause a refusal, never a wrong answer.
type prover struct {
	readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)

	mu    sync.Mutex
	nodes map[compact.NodeID][]byte
}

func newProver(readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)) *prover {
	return &prover{readTile: readTile, nodes: map[compact.NodeID][]byte{}}
}

// inclusion returns the proof that entry index is in the tree of size.
func (p *prover) inclusion(ctx context.Context, index, size uint64) ([][]byte, error) {
	ns, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(ns.IDs))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, id := range ns.IDs {
		if hashes[i], err = p.node(ctx, id, size); err != nil {
			return nil, err
		}
	}
	return ns.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// node returns the hash of the complete subtree id of a tree of size,
// reading its tile if it is not in the memo. p.mu is held.
func (p *prover) node(ctx context.Context, id compact.NodeID, size uint64) ([]byte, error) {
	if h, ok := p.nodes[id]; ok {
		return h, nil
	}
	tl, ti, _, _ := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	raw, err := p.readTile(ctx, tl, ti, layout.PartialTileSize(tl, ti, size))
	if err != nil {
		return nil, fmt.Errorf("tile %d/%d of a tree of %d entries: %w", tl, ti, size, err)
	}
	var t api.HashTile
	if err := t.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("tile %d/%d of a tree of %d entries: %w", tl, ti, size, err)
	}
	if len(p.nodes) > maxProverNodes {
		clear(p.nodes)
	}
	// Every complete subtree within the tile, bottom up: the tile's
	// hashes are its level 0; its levels 1 to 7 pair them.
	level := t.Nodes
	for l := uint(0); l < layout.TileHeight && len(level) > 0; l++ {
		first := ti * (layout.TileWidth >> l)
		for k, h := range level {
			p.nodes[compact.NewNodeID(uint(tl)*layout.TileHeight+l, first+uint64(k))] = h
		}
		next := make([][]byte, 0, len(level)/2)
		for k := 0; k+1 < len(level); k += 2 {
			next = append(next, rfc6962.DefaultHasher.HashChildren(level[k], level[k+1]))
		}
		level = next
	}
	h, ok := p.nodes[id]
	if !ok {
		return nil, fmt.Errorf("tile %d/%d of a tree of %d entries does not hold node %d/%d", tl, ti, size, id.Level, id.Index)
	}
	return h, nil
}

// forget empties the memo.
func (p *prover) forget() {
	p.mu.Lock()
	clear(p.nodes)
	p.mu.Unlock()
}
