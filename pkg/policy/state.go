package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/stepseal/stepseal/pkg/signing"
)

// StateFile is the file of a state directory that records, per policy name
// and owner keys, the highest version accepted and its document digest.
const StateFile = "platform-policies.json"

// StateKind is the kind of the state document.
const StateKind = "PlatformPolicyState"

// maxStateFile caps the state file.
const maxStateFile = 4 << 20

// State is the record of accepted signed policies that makes clients refuse
// rollback: a policy is identified by its name and the sorted key IDs of the
// owner keys the caller verifies it with (not the keys that happened to
// sign, which whoever serves the policy chooses among). Per identity it
// keeps the highest version accepted and the digest of its document; an
// older version, or the same version with another digest (a fork), is
// ErrRollback. The file is read and rewritten under an exclusive lock
// (flock), atomically (temporary file, fsync, rename), mode 0600 in a 0700
// directory. A state file that cannot be read or parsed is ErrState naming
// it; it is never reset silently.
type State struct{ dir string }

// Accepted is one record of a State.
type Accepted struct {
	Name string `json:"name"`
	// Owners are the sorted key IDs of the owner keys.
	Owners  []string `json:"owners"`
	Version int64    `json:"version"`
	// Digest is Policy.Digest of the accepted version.
	Digest string `json:"digest"`
	// Source is where it was read from when accepted (informational).
	Source string `json:"source,omitempty"`
}

type stateDoc struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Policies   []Accepted `json:"policies"`
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// NewState returns the state kept in dir; nothing is read or created until
// it is used.
func NewState(dir string) *State { return &State{dir: dir} }

// DefaultStateDir is $XDG_STATE_HOME/stepseal, or ~/.local/state/stepseal
// when XDG_STATE_HOME is unset or not absolute.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "stepseal"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: no state directory (set XDG_STATE_HOME or HOME, or pass a state directory): %w", ErrState, err)
	}
	return filepath.Join(home, ".local", "state", "stepseal"), nil
}

// Path is the state file.
func (s *State) Path() string { return filepath.Join(s.dir, StateFile) }

// Lookup returns the record for a policy name and owner key IDs.
func (s *State) Lookup(name string, owners []string) (Accepted, bool, error) {
	unlock, err := s.lock()
	if err != nil {
		return Accepted{}, false, err
	}
	defer unlock()
	doc, err := s.read()
	if err != nil {
		return Accepted{}, false, err
	}
	i := find(doc, name, normOwners(owners))
	if i < 0 {
		return Accepted{}, false, nil
	}
	return doc.Policies[i], true, nil
}

// Accept checks p (which must have verified with the owner keys whose IDs
// are owners) against the record and records it when it is newer: an older
// version, or the recorded version with another digest, is ErrRollback and
// leaves the record as it was.
func (s *State) Accept(p *Policy, owners []string) error {
	owners = normOwners(owners)
	if len(owners) == 0 {
		return fmt.Errorf("%w: policy %q: no owner key to record it under", ErrState, p.Name)
	}
	if !digestRE.MatchString(p.digest) {
		return fmt.Errorf("%w: policy %q has no document digest", ErrState, p.Name)
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	doc, err := s.read()
	if err != nil {
		return err
	}
	rec := Accepted{Name: p.Name, Owners: owners, Version: p.Version, Digest: p.digest, Source: p.source}
	if i := find(doc, p.Name, owners); i >= 0 {
		old := doc.Policies[i]
		switch {
		case p.Version < old.Version:
			return fmt.Errorf("%w: %s: policy %q version %d is older than version %d already accepted (recorded in %s)", ErrRollback, p.source, p.Name, p.Version, old.Version, s.Path())
		case p.Version == old.Version && p.digest != old.Digest:
			return fmt.Errorf("%w: %s: policy %q version %d is a fork: its document %s differs from the version %d already accepted (%s, recorded in %s)", ErrRollback, p.source, p.Name, p.Version, p.digest, old.Version, old.Digest, s.Path())
		case p.Version == old.Version:
			return nil
		}
		doc.Policies[i] = rec
	} else {
		doc.Policies = append(doc.Policies, rec)
	}
	slices.SortFunc(doc.Policies, func(a, b Accepted) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Owners, ","), strings.Join(b.Owners, ","))
	})
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, s.Path(), err)
	}
	if err := signing.WriteFileAtomic(s.Path(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrState, s.Path(), err)
	}
	return nil
}

// lock creates the state directory (0700) and takes the exclusive lock.
func (s *State) lock() (func(), error) {
	if s == nil || s.dir == "" {
		return nil, fmt.Errorf("%w: no state directory", ErrState)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	path := filepath.Join(s.dir, "."+StateFile+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: locking %s: %w", ErrState, path, err)
	}
	return func() { f.Close() }, nil
}

// read parses the state file strictly; a missing file is an empty state.
func (s *State) read() (*stateDoc, error) {
	path := s.Path()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &stateDoc{APIVersion: APIVersion, Kind: StateKind, Policies: []Accepted{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrState, path, err)
	}
	doc, err := parseState(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is corrupted (%w); it is not reset: restore it, or remove it to accept whatever version is read next", ErrState, path, err)
	}
	return doc, nil
}

// parseState decodes and validates a state document.
func parseState(data []byte) (*stateDoc, error) {
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	var doc stateDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, oneLineError{err}
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	if doc.APIVersion != APIVersion || doc.Kind != StateKind {
		return nil, fmt.Errorf("apiVersion %q kind %q, want %q %q", doc.APIVersion, doc.Kind, APIVersion, StateKind)
	}
	seen := map[string]bool{}
	for i, a := range doc.Policies {
		switch {
		case !nameRE.MatchString(a.Name):
			return nil, fmt.Errorf("policies[%d]: name %q", i, a.Name)
		case a.Version < 1:
			return nil, fmt.Errorf("policies[%d] (%s): version %d", i, a.Name, a.Version)
		case !digestRE.MatchString(a.Digest):
			return nil, fmt.Errorf("policies[%d] (%s): digest %q", i, a.Name, a.Digest)
		case len(a.Owners) == 0 || !slices.Equal(a.Owners, normOwners(a.Owners)):
			return nil, fmt.Errorf("policies[%d] (%s): owners must be sorted distinct key IDs", i, a.Name)
		}
		k := a.Name + "\x00" + strings.Join(a.Owners, ",")
		if seen[k] {
			return nil, fmt.Errorf("policies[%d] (%s): recorded twice", i, a.Name)
		}
		seen[k] = true
	}
	if doc.Policies == nil {
		doc.Policies = []Accepted{}
	}
	return &doc, nil
}

func find(doc *stateDoc, name string, owners []string) int {
	for i, a := range doc.Policies {
		if a.Name == name && slices.Equal(a.Owners, owners) {
			return i
		}
	}
	return -1
}

// normOwners sorts and deduplicates key IDs.
func normOwners(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// ownerIDs are the key IDs of the owner keys a policy is verified with.
func ownerIDs(keys []signing.Verifier) ([]string, error) {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, err := k.KeyID()
		if err != nil {
			return nil, fmt.Errorf("%w: owner key: %w", ErrState, err)
		}
		ids = append(ids, id)
	}
	return normOwners(ids), nil
}
