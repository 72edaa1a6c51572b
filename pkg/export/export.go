package export

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Kinds of exported documents.
const (
	// KindDSSE is a DSSE envelope of an in-toto statement.
	KindDSSE = "dsse"
	// KindBundle is a Sigstore bundle (of a DSSE envelope).
	KindBundle = "sigstore-bundle"
)

// MaxDocument bounds one document read or written.
const MaxDocument = signing.MaxEnvelopeSize

// ErrDestination: the output directory exists and is not empty (GUAC
// ingests every file under it: nothing is mixed in). reject.ErrPolicy.
var ErrDestination = reject.Sentinel(reject.ErrPolicy, "export directory is not empty")

// Doc is one document to export: its name (an entry or file name) and
// bytes.
type Doc struct {
	Name string
	Data []byte
}

// File is one exported file.
type File struct {
	// Path is the file's name in the output directory, Source the
	// document's name, Kind KindDSSE or KindBundle.
	Path          string `json:"path"`
	Source        string `json:"source"`
	Kind          string `json:"kind"`
	PredicateType string `json:"predicateType"`
	Digest        string `json:"digest"`
}

// Skipped is a document left out, and why.
type Skipped struct {
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// Result is what Write wrote.
type Result struct {
	Dir     string    `json:"dir"`
	Files   []File    `json:"files"`
	Skipped []Skipped `json:"skipped"`
}

// Classify says what GUAC would take data for: KindDSSE (a DSSE envelope
// — payload, payload type and at least one signature, as GUAC's DSSE
// guesser checks — whose payload is an in-toto statement) or KindBundle
// (what sigstore-go's bundle parser accepts, as GUAC's bundle guesser
// checks, holding a DSSE envelope of an in-toto statement), with the
// statement's predicate type. Anything else is an error saying what it is.
func Classify(data []byte) (kind, predicateType string, err error) {
	var head map[string]json.RawMessage
	if err := json.Unmarshal(data, &head); err != nil {
		return "", "", fmt.Errorf("%w: not a JSON object", reject.ErrMalformed)
	}
	if _, ok := head["mediaType"]; ok {
		var b sgbundle.Bundle
		b.Bundle = new(protobundle.Bundle)
		if err := b.UnmarshalJSON(data); err != nil {
			return "", "", fmt.Errorf("%w: not a Sigstore bundle: %v", reject.ErrMalformed, err)
		}
		de := b.GetDsseEnvelope()
		if de == nil {
			return "", "", fmt.Errorf("%w: a Sigstore bundle of a message signature, not of an attestation", reject.ErrUnsupported)
		}
		pt, err := statementType(de.GetPayloadType(), de.GetPayload())
		if err != nil {
			return "", "", err
		}
		return KindBundle, pt, nil
	}
	if _, ok := head["signed"]; ok {
		return "", "", fmt.Errorf("%w: an in-toto Metablock (link or layout): GUAC has no parser for it", reject.ErrUnsupported)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil || env.Payload == "" || env.PayloadType == "" || len(env.Signatures) == 0 {
		return "", "", fmt.Errorf("%w: not a signed DSSE envelope", reject.ErrMalformed)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return "", "", fmt.Errorf("%w: DSSE payload is not base64", reject.ErrMalformed)
	}
	pt, err := statementType(env.PayloadType, payload)
	if err != nil {
		return "", "", err
	}
	return KindDSSE, pt, nil
}

// statementType is the predicate type of an in-toto statement payload.
func statementType(payloadType string, payload []byte) (string, error) {
	if payloadType != signing.PayloadTypeInToto {
		return "", fmt.Errorf("%w: payload type %q is not an in-toto statement", reject.ErrUnsupported, payloadType)
	}
	var st struct {
		Type          string            `json:"_type"`
		PredicateType string            `json:"predicateType"`
		Subject       []json.RawMessage `json:"subject"`
	}
	if err := json.Unmarshal(payload, &st); err != nil || !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") || st.PredicateType == "" || len(st.Subject) == 0 {
		return "", fmt.Errorf("%w: the payload is not an in-toto statement with subjects and a predicate type", reject.ErrMalformed)
	}
	return st.PredicateType, nil
}

// FromEntries is the documents of store entries (a run's, from any store
// or a served log).
func FromEntries(entries []store.Entry) []Doc {
	docs := make([]Doc, 0, len(entries))
	for _, e := range entries {
		docs = append(docs, Doc{Name: e.Name, Data: e.Data})
	}
	return docs
}

// FromDir is the documents of the regular files directly in dir (a run's
// output directory: links, provenance, bundles), each at most
// MaxDocument bytes; subdirectories and other files are not read.
func FromDir(dir string) ([]Doc, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var docs []Doc
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		data, err := limited.ReadFile(filepath.Join(dir, de.Name()), MaxDocument)
		if err != nil {
			return nil, err
		}
		docs = append(docs, Doc{Name: de.Name(), Data: data})
	}
	return docs, nil
}

// Write writes every document Classify accepts into dir, one file each
// (0644; dir is created 0755 and must be absent or empty), named after the
// document with ".dsse.json" or ".sigstore.json"; the rest is reported as
// skipped. Two documents of the same content are written once. On an
// error, the files written are removed.
func Write(dir string, docs []Doc) (_ *Result, err error) {
	if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
		return nil, fmt.Errorf("%w: %s has %d entries", ErrDestination, dir, len(des))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Dir: dir, Files: []File{}, Skipped: []Skipped{}}
	defer func() {
		if err != nil {
			for _, f := range res.Files {
				_ = os.Remove(filepath.Join(dir, f.Path))
			}
		}
	}()
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	seen := map[string]bool{}
	used := map[string]bool{}
	for _, d := range docs {
		if len(d.Data) > MaxDocument {
			res.Skipped = append(res.Skipped, Skipped{Source: d.Name, Reason: fmt.Sprintf("larger than %d bytes", MaxDocument)})
			continue
		}
		kind, pt, cerr := Classify(d.Data)
		if cerr != nil {
			res.Skipped = append(res.Skipped, Skipped{Source: d.Name, Reason: cerr.Error()})
			continue
		}
		digest := store.Digest(d.Data)
		if seen[digest] {
			continue
		}
		seen[digest] = true
		path := fileName(d.Name, kind, digest, used)
		if err := os.WriteFile(filepath.Join(dir, path), d.Data, 0o644); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, File{Path: path, Source: d.Name, Kind: kind, PredicateType: pt, Digest: digest})
	}
	return res, nil
}

// fileName is a file name for document name of kind: its base with
// characters outside [A-Za-z0-9._-] replaced, known endings dropped, the
// kind's ending added, and the digest's start when the name is taken.
func fileName(name, kind, digest string, used map[string]bool) string {
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	for _, suffix := range []string{".sigstore.json", ".dsse.json", ".json", ".intoto.jsonl"} {
		base = strings.TrimSuffix(base, suffix)
	}
	base = strings.TrimLeft(base, ".")
	if base == "" || len(base) > 200 {
		base = strings.TrimPrefix(digest, "sha256:")[:16]
	}
	ext := ".dsse.json"
	if kind == KindBundle {
		ext = ".sigstore.json"
	}
	p := base + ext
	if used[p] {
		p = base + "." + strings.TrimPrefix(digest, "sha256:")[:12] + ext
	}
	used[p] = true
	return p
}
