package rekor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	rekorclient "github.com/sigstore/rekor-tiles/v2/pkg/client"
	"github.com/sigstore/rekor-tiles/v2/pkg/client/write"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"

	"github.com/stepseal/stepseal/pkg/signing"
)

// DefaultTimeout is how long one write may take: Rekor v2 answers only
// once a checkpoint covers the entry (its CLIENTS.md asks for at least 20s).
const DefaultTimeout = 30 * time.Second

// Publisher logs signed attestations in one Rekor v2 log.
type Publisher struct {
	log    Log
	writer write.Client
	tiles  *tclient.HTTPFetcher
}

// NewPublisher returns a Publisher for l, whose writes time out after
// timeout (0: DefaultTimeout). It writes through rekor-tiles' own client
// and reads tiles through Tessera's.
func NewPublisher(l Log, timeout time.Duration) (*Publisher, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	w, err := write.NewWriter(l.URL, rekorclient.WithTimeout(timeout), rekorclient.WithUserAgent("stepseal"))
	if err != nil {
		return nil, fmt.Errorf("rekor log %s: %w", l.Origin, err)
	}
	tu, err := l.tilesURL()
	if err != nil {
		return nil, err
	}
	f, err := tclient.NewHTTPFetcher(tu, &http.Client{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("rekor log %s: %w", l.Origin, err)
	}
	return &Publisher{log: l, writer: w, tiles: f}, nil
}

// Published is a logged attestation.
type Published struct {
	// Bundle is the verified Sigstore bundle (JSON).
	Bundle []byte
	// LogIndex is the entry's index in the log.
	LogIndex int64
	// Duplicate: the log held the entry already (the same signature
	// logged before); Bundle proves that existing entry.
	Duplicate bool
	// PredicateType is the statement's predicate type.
	PredicateType string
}

// Publish logs env's signature by pub in the log and returns the bundle
// proving it, in these steps:
//
//  1. the key: one Rekor v2 logs (KeyAlgorithm; ErrKeyNotLoggable before
//     the log is contacted);
//  2. the signature: the envelope's signature that verifies with pub over
//     the DSSE PAE (ErrSignature), of an in-toto statement (ErrBundle);
//  3. the request: hashedrekord v0.0.2 of the PAE's digest, that signature
//     and pub's DER (Rekor's own client posts it);
//  4. the answer: the new entry; for a duplicate (409, "an equivalent
//     entry already exists … with index N") the entry at N is read from
//     the log's tiles with a proof against its current checkpoint;
//  5. the bundle, verified with Verify against the log's key before it is
//     returned: nothing that did not verify leaves this function.
func (p *Publisher) Publish(ctx context.Context, env *dsse.Envelope, pub crypto.PublicKey) (*Published, error) {
	// 1. the key
	details, hash, err := KeyAlgorithm(pub)
	if err != nil {
		return nil, err
	}
	// 2. the signature
	if env == nil {
		return nil, fmt.Errorf("%w: no envelope", ErrBundle)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload is not base64", ErrBundle)
	}
	pae := dsse.PAE(env.PayloadType, payload)
	v, err := signing.NewVerifier(pub)
	if err != nil {
		return nil, err
	}
	var sig *dsse.Signature
	var raw []byte
	for i := range env.Signatures {
		s, err := base64.StdEncoding.DecodeString(env.Signatures[i].Sig)
		if err == nil && v.Verify(ctx, pae, s) == nil {
			sig, raw = &env.Signatures[i], s
			break
		}
	}
	if sig == nil {
		return nil, fmt.Errorf("%w: none of the envelope's %d signatures verifies with key %s", ErrSignature, len(env.Signatures), keyName(pub))
	}
	// Only an in-toto statement is logged: a bundle of anything else would
	// be refused afterwards, with the entry already in the log.
	if _, err := checkStatement(env, VerifyOptions{AnySubjectUnsafe: true}); err != nil {
		return nil, err
	}
	// 3. the request
	h := hash.New()
	h.Write(pae)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	req := &pb.HashedRekordRequestV002{Digest: h.Sum(nil), Signature: hashedSignature(raw, der, details)}
	// 4. the answer
	out := &Published{}
	tle, err := p.writer.Add(ctx, req)
	if err != nil {
		idx, dup, cerr := p.classify(err)
		if !dup {
			return nil, cerr
		}
		if tle, err = p.existing(ctx, idx, req); err != nil {
			return nil, err
		}
		out.Duplicate = true
	}
	// 5. the bundle, verified
	b, err := bundleJSON(env, *sig, pub, tle)
	if err != nil {
		return nil, err
	}
	vd, err := Verify(b, VerifyOptions{Key: pub, Logs: []Log{p.log}, AnySubjectUnsafe: true})
	if err != nil {
		return nil, fmt.Errorf("rekor log %s answered with an entry that does not verify: %w", p.log.Origin, err)
	}
	out.Bundle, out.LogIndex, out.PredicateType = b, vd.LogIndex, vd.PredicateType
	return out, nil
}

// rekor-tiles' client reports a non-201 answer as this text (it has no
// typed error); a duplicate's message names the existing index.
var (
	unexpectedRE = regexp.MustCompile(`^unexpected response: (\d{3}) `)
	duplicateRE  = regexp.MustCompile(`an equivalent entry already exists in the transparency log with index (\d+)`)
)

// classify turns the writer's error into the index of an existing entry
// (dup) or a typed error: a 4xx is the log's refusal, anything else (5xx,
// network, timeout) the log unavailable.
func (p *Publisher) classify(err error) (idx uint64, dup bool, _ error) {
	msg := err.Error()
	m := unexpectedRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, false, fmt.Errorf("%w: %s: %v", ErrUnavailable, p.log.URL, err)
	}
	code, _ := strconv.Atoi(m[1])
	if code == http.StatusConflict {
		if d := duplicateRE.FindStringSubmatch(msg); d != nil {
			if n, perr := strconv.ParseUint(d[1], 10, 63); perr == nil {
				return n, true, nil
			}
		}
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	if code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout {
		return 0, false, fmt.Errorf("%w: %s: %s", ErrLogRefused, p.log.URL, msg)
	}
	return 0, false, fmt.Errorf("%w: %s: %s", ErrUnavailable, p.log.URL, msg)
}

// existing rebuilds the transparency log entry at idx, which the log says
// holds req, from its tiles: the current checkpoint (signature checked),
// the entry's bundle, its inclusion proof. The entry must be req's.
func (p *Publisher) existing(ctx context.Context, idx uint64, req *pb.HashedRekordRequestV002) (*protorekor.TransparencyLogEntry, error) {
	nv, err := p.log.noteVerifier()
	if err != nil {
		return nil, err
	}
	raw, err := p.tiles.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the checkpoint of %s for duplicate entry %d: %v", ErrUnavailable, p.log.Origin, idx, err)
	}
	cp, _, _, err := flog.ParseCheckpoint(raw, p.log.Origin, nv)
	if err != nil {
		return nil, fmt.Errorf("%w: the checkpoint of %s: %v", ErrCheckpoint, p.log.Origin, err)
	}
	if idx >= cp.Size {
		return nil, fmt.Errorf("%w: %s says entry %d duplicates ours, its checkpoint covers %d entries", ErrUnavailable, p.log.Origin, idx, cp.Size)
	}
	eb, err := tclient.GetEntryBundle(ctx, p.tiles.ReadEntryBundle, idx/256, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: reading entry %d of %s: %v", ErrUnavailable, idx, p.log.Origin, err)
	}
	if int(idx%256) >= len(eb.Entries) {
		return nil, fmt.Errorf("%w: entry %d of %s is not in its bundle", ErrUnavailable, idx, p.log.Origin)
	}
	body := eb.Entries[idx%256]
	want, err := hashedRekordLeaf(req)
	if err != nil {
		return nil, err
	}
	if got := rfc6962.DefaultHasher.HashLeaf(body); !bytes.Equal(got, want) {
		return nil, fmt.Errorf("%w: %s says entry %d duplicates ours, but it holds another entry", ErrEntry, p.log.Origin, idx)
	}
	pbuilder, err := tclient.NewProofBuilder(ctx, cp.Size, p.tiles.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the tiles of %s: %v", ErrUnavailable, p.log.Origin, err)
	}
	hashes, err := pbuilder.InclusionProof(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("%w: inclusion proof of entry %d of %s: %v", ErrUnavailable, idx, p.log.Origin, err)
	}
	id, err := p.log.ID()
	if err != nil {
		return nil, err
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:    int64(idx),
		LogId:       &protocommon.LogId{KeyId: id},
		KindVersion: &protorekor.KindVersion{Kind: kindHashedRekord, Version: versionHashedRekord},
		InclusionProof: &protorekor.InclusionProof{
			LogIndex:   int64(idx),
			RootHash:   cp.Hash,
			TreeSize:   int64(cp.Size),
			Hashes:     hashes,
			Checkpoint: &protorekor.Checkpoint{Envelope: string(raw)},
		},
		CanonicalizedBody: body,
	}, nil
}

// hashedRekordLeaf is the leaf hash of req's entry (rekor-tiles' own
// ToEntryHash).
func hashedRekordLeaf(req *pb.HashedRekordRequestV002) ([]byte, error) {
	h, err := hashedrekord.ToEntryHash(req.GetDigest(), req.GetSignature())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyNotLoggable, err)
	}
	return h, nil
}
