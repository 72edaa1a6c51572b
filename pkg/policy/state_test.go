package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// signedVersion signs the example policy as version v; label changes the
// content without changing the version (a fork).
func signedVersion(t *testing.T, v int64, label string, signers ...signing.Signer) []byte {
	t.Helper()
	p, err := Load(examplePolicy(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Version = v
	if label != "" {
		pl := p.Platforms[0]
		pl.Labels = maps.Clone(pl.Labels)
		pl.Labels["fork"] = label
		p.Platforms[0] = pl
	}
	env, err := Sign(context.Background(), p, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestStateRefusesRollbackAndFork(t *testing.T) {
	ss, vs := owners(t, 3)
	dir := filepath.Join(t.TempDir(), "state")
	st := NewState(dir)
	opts := Options{Keys: vs[:2], State: st}
	parse := func(name string, data []byte, o Options) error {
		_, err := Parse(data, name, o)
		return err
	}
	v1 := signedVersion(t, 1, "", ss[0])
	v2 := signedVersion(t, 2, "", ss[0], ss[1])
	if err := parse("v2.json", v2, opts); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	// v1 is signed by one owner only: the record is keyed by the owner keys
	// the caller verifies with, not by who signed, so this is no escape.
	err = parse("v1.json", v1, opts)
	if !errors.Is(err, ErrRollback) || !errors.Is(err, reject.ErrRefused) || errors.Is(err, reject.ErrUnableToCheck) || !strings.Contains(err.Error(), `v1.json: policy "demo" version 1 is older than version 2 already accepted (recorded in `+st.Path()+")") {
		t.Fatalf("rollback: %v", err)
	}
	// The same version signed again (another signature, same document) is fine.
	if err := parse("v2-resigned.json", signedVersion(t, 2, "", ss[1]), opts); err != nil {
		t.Fatalf("same version re-signed: %v", err)
	}
	// The same version with other content is a fork.
	err = parse("fork.json", signedVersion(t, 2, "x", ss[0]), opts)
	if !errors.Is(err, ErrRollback) || !strings.Contains(err.Error(), `fork.json: policy "demo" version 2 is a fork: its document sha256:`) {
		t.Fatalf("fork: %v", err)
	}
	after, _ := os.ReadFile(st.Path())
	if string(before) != string(after) {
		t.Fatalf("a refused policy changed the state:\n%s\n%s", before, after)
	}
	// Other owner keys: another policy with the same name (a new demo run).
	if err := parse("v1-other-owner.json", signedVersion(t, 1, "", ss[2]), Options{Keys: vs[2:], State: st}); err != nil {
		t.Fatalf("other owners: %v", err)
	}
	// v3 moves the record forward; then v2 is a rollback.
	if err := parse("v3.json", signedVersion(t, 3, "", ss[0]), opts); err != nil {
		t.Fatal(err)
	}
	if err := parse("v2.json", v2, opts); !errors.Is(err, ErrRollback) {
		t.Fatalf("v2 after v3: %v", err)
	}
	ids, _ := ownerIDs(vs[:2])
	a, ok, err := st.Lookup("demo", []string{ids[1], ids[0]})
	if err != nil || !ok || a.Version != 3 || a.Source != "v3.json" || !digestRE.MatchString(a.Digest) {
		t.Fatalf("record %+v %v %v", a, ok, err)
	}
	// An unsigned policy is not tracked.
	if _, err := Load(examplePolicy(t), Options{State: NewState(filepath.Join(t.TempDir(), "unsigned"))}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(st.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", fi.Mode(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode: %v %v", di.Mode(), err)
	}
}

func TestStateUnsignedNotRecorded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Load(examplePolicy(t), Options{State: NewState(dir)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unsigned policy recorded: %v", err)
	}
}

func TestStateCorrupted(t *testing.T) {
	ss, vs := owners(t, 1)
	v1 := signedVersion(t, 1, "", ss[0])
	for _, c := range []struct{ name, data, why string }{
		{"truncated", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "PlatformPolicyState", "policies": [{"name": "demo"`, "unexpected EOF"},
		{"empty", ``, "EOF"},
		{"wrong kind", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "Other", "policies": []}`, `kind "Other"`},
		{"unknown field", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "PlatformPolicyState", "policies": [], "x": 1}`, `unknown field "x"`},
		{"bad digest", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "PlatformPolicyState", "policies": [{"name": "demo", "owners": ["a"], "version": 9, "digest": "md5:x"}]}`, `digest "md5:x"`},
		{"version zero", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "PlatformPolicyState", "policies": [{"name": "demo", "owners": ["a"], "version": 0, "digest": "sha256:` + strings.Repeat("0", 64) + `"}]}`, "version 0"},
		{"unsorted owners", `{"apiVersion": "stepseal.dev/v1alpha1", "kind": "PlatformPolicyState", "policies": [{"name": "demo", "owners": ["b", "a"], "version": 1, "digest": "sha256:` + strings.Repeat("0", 64) + `"}]}`, "owners must be sorted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st := NewState(dir)
			if err := os.WriteFile(st.Path(), []byte(c.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Parse(v1, "v1.json", Options{Keys: vs, State: st})
			if !errors.Is(err, ErrState) || errors.Is(err, ErrRollback) || !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) || !strings.Contains(err.Error(), st.Path()+" is corrupted") || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("err = %v", err)
			}
			if got, _ := os.ReadFile(st.Path()); string(got) != c.data {
				t.Fatal("corrupted state was rewritten")
			}
		})
	}
	t.Run("unreadable directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		_, err := Parse(v1, "v1.json", Options{Keys: vs, State: NewState(file)})
		if !errors.Is(err, ErrState) {
			t.Fatalf("state dir is a file: %v", err)
		}
	})
}

// TestStateConcurrentWriters: writers accepting versions 1..n in parallel
// (goroutines, each with its own lock file descriptor, as processes have)
// leave the highest version recorded, and every refusal is a rollback.
func TestStateConcurrentWriters(t *testing.T) {
	ss, vs := owners(t, 1)
	const n = 24
	envs := make([][]byte, n+1)
	for v := 1; v <= n; v++ {
		envs[v] = signedVersion(t, int64(v), "", ss[0])
	}
	for round := range 4 {
		st := NewState(t.TempDir())
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for v := n; v >= 1; v-- {
			wg.Add(1)
			go func(v int) {
				defer wg.Done()
				if _, err := Parse(envs[v], fmt.Sprintf("v%d.json", v), Options{Keys: vs, State: NewState(st.dir)}); err != nil && !errors.Is(err, ErrRollback) {
					errs <- err
				}
			}(v)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		ids, _ := ownerIDs(vs)
		a, ok, err := st.Lookup("demo", ids)
		if err != nil || !ok || a.Version != n {
			t.Fatalf("round %d: record %+v %v %v, want version %d", round, a, ok, err, n)
		}
		if _, err := Parse(envs[n-1], "old.json", Options{Keys: vs, State: st}); !errors.Is(err, ErrRollback) {
			t.Fatalf("round %d: older version after the race: %v", round, err)
		}
	}
}

func TestDefaultStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if d, err := DefaultStateDir(); err != nil || d != "/x/state/stepseal" {
		t.Fatalf("%q %v", d, err)
	}
	t.Setenv("XDG_STATE_HOME", "relative")
	t.Setenv("HOME", "/home/u")
	if d, err := DefaultStateDir(); err != nil || d != "/home/u/.local/state/stepseal" {
		t.Fatalf("%q %v", d, err)
	}
}

// FuzzParseState: the state parser never panics, and what it accepts
// re-encodes to a document it accepts again.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"stepseal.dev/v1alpha1","kind":"PlatformPolicyState","policies":[{"name":"demo","owners":["a","b"],"version":2,"digest":"sha256:` + strings.Repeat("ab", 32) + `"}]}`))
	f.Add([]byte(`{"apiVersion":"stepseal.dev/v1alpha1","kind":"PlatformPolicyState","policies":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseState(data)
		if err != nil {
			return
		}
		out, err := jsonMarshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseState(out); err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
	})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
