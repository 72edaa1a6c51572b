package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

var fuzzRoles = []string{"root", "timestamp", "snapshot", "targets", "payments"}

// FuzzLoad drives arbitrary bytes through the metadata loading path: the
// guard, then go-tuf's parser with no recover() (whatever the guard lets
// through must not panic go-tuf), then a timestamp re-signed with the
// repository's real key through go-tuf's trusted set (go-tuf panics after
// the signature check on a timestamp without snapshot meta), then a full
// Refresh, a lookup (loading payments lazily) and LoadAll with the bytes
// served in place of a role's file. Nothing may
// panic, and every error must be one of this package's.
func FuzzLoad(f *testing.F) {
	s, _ := paymentsRepo(f)
	rootBytes := s.get("1.root.json")
	seedFiles := map[string]string{"root": "1.root.json", "timestamp": "timestamp.json", "snapshot": "2.snapshot.json", "targets": "2.targets.json", "payments": "1.payments.json"}
	for i, role := range fuzzRoles {
		good := string(s.get(seedFiles[role]))
		f.Add(uint8(i), []byte(good))
		f.Add(uint8(i), []byte(strings.Replace(good, `"spec_version": "1.0.31"`, `"spec_version": "9.0.0"`, 1)))
		f.Add(uint8(i), []byte("\xef\xbb\xbf"+good))
	}
	// Inputs on which go-tuf v2.4.2 panics: a null target entry, a null
	// snapshot meta entry, a timestamp without snapshot meta; and others the
	// guard refuses (duplicate keys, a 2-byte ed25519 key).
	f.Add(uint8(4), []byte(`{"signed":{"_type":"targets","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","targets":{"zz":null}},"signatures":[]}`))
	f.Add(uint8(2), []byte(`{"signed":{"_type":"snapshot","spec_version":"1.0.31","version":2,"expires":"2030-01-01T00:00:00Z","meta":{"targets.json":null}},"signatures":[]}`))
	f.Add(uint8(1), []byte(`{"signed":{"_type":"timestamp","spec_version":"1.0.31","version":2,"expires":"2030-01-01T00:00:00Z","meta":{}},"signatures":[]}`))
	f.Add(uint8(1), []byte(`{"signed":{"_type":"timestamp","spec_version":"1.0.31","version":2,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}}},"signatures":[],"signatures":[]}`))
	f.Add(uint8(3), []byte(`{"signed":{"_type":"targets","spec_version":"1.0.31","version":2,"expires":"2030-01-01T00:00:00Z","targets":{},"delegations":{"keys":{"k":{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"abab"}}},"roles":[{"name":"a","keyids":["k"],"threshold":1,"terminating":true,"paths":["*"]}]}},"signatures":[]}`))

	var mu sync.Mutex // the simulator serves one fuzz input at a time
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		role := fuzzRoles[int(kind)%len(fuzzRoles)]
		if err := checkMetadata(role, data, DefaultMaxRoleSize); err != nil {
			if !errors.Is(err, ErrTrust) {
				t.Fatalf("untyped guard error: %v", err)
			}
		} else {
			goTUFParse(t, role, data)
		}
		if role == "timestamp" {
			resignedTimestamp(t, s, data)
		}
		mu.Lock()
		defer mu.Unlock()
		name := seedFiles[role]
		good := s.get(name)
		s.set(name, data)
		defer s.set(name, good)
		c := s.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.BootstrapRoot = rootBytes })
		if _, err := c.Refresh(ctx); err != nil && !errors.Is(err, ErrTrust) {
			t.Fatalf("untyped refresh error: %v", err)
		}
		if _, err := c.Resolve(ctx, "images/payments/api"); err != nil && !errors.Is(err, ErrTrust) {
			t.Fatalf("untyped resolve error: %v", err)
		}
		if err := c.LoadAll(ctx); err != nil && !errors.Is(err, ErrTrust) {
			t.Fatalf("untyped LoadAll error: %v", err)
		}
		c.Status(ctx)
	})
}

// goTUFParse parses guarded bytes with go-tuf, with no recover().
func goTUFParse(t *testing.T, role string, data []byte) {
	var err error
	switch typeOf(role) {
	case "root":
		_, err = (&metadata.Metadata[metadata.RootType]{}).FromBytes(data)
	case "timestamp":
		_, err = (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(data)
	case "snapshot":
		_, err = (&metadata.Metadata[metadata.SnapshotType]{}).FromBytes(data)
	default:
		_, err = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data)
	}
	_ = err // go-tuf may still refuse what the guard lets through
}

// resignedTimestamp signs a guarded timestamp with the real timestamp key
// and gives it to go-tuf's trusted set after a valid one: the path where
// go-tuf dereferences the snapshot meta.
func resignedTimestamp(t *testing.T, s *sim, data []byte) {
	if checkMetadata("timestamp", data, maxTimestampSize) != nil {
		return
	}
	md, err := (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(data)
	if err != nil {
		return
	}
	resigned := sign(t, md, s.signers["timestamp"])
	if err := checkMetadata("timestamp", resigned, maxTimestampSize); err != nil {
		return
	}
	trusted, err := trustedmetadata.New(s.get("1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trusted.UpdateTimestamp(s.get("timestamp.json")); err != nil {
		t.Fatal(err)
	}
	_, _ = trusted.UpdateTimestamp(resigned)
}

// TestGoTUFPanicsWithoutGuard documents why the guard exists: go-tuf
// v2.4.2 panics on these inputs, the guard refuses them first.
func TestGoTUFPanicsWithoutGuard(t *testing.T) {
	for _, in := range []string{
		`{"signed":{"_type":"targets","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","targets":{"zz":null}},"signatures":[]}`,
	} {
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			_, _ = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes([]byte(in))
			return false
		}()
		if !panicked {
			t.Log("go-tuf no longer panics on this input; the guard stays as defence in depth")
		}
		err := checkMetadata("targets", []byte(in), DefaultMaxRoleSize)
		wantErr(t, err, ErrMalformed)
	}
}

// refCheckJSON is the json.Decoder-based walk checkJSON replaced, kept as
// the reference FuzzCheckJSON compares it with. It refuses invalid UTF-8, a byte order mark, trailing data,
// duplicate object keys, excessive nesting and null outside "custom".
func refCheckJSON(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("invalid UTF-8")
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return errors.New("byte order mark")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkJSON(dec, "", 0, false); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func walkJSON(dec *json.Decoder, at string, depth int, custom bool) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("nested deeper than %d at %s", maxJSONDepth, at)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON at %s: %v", where(at), err)
	}
	switch t := tok.(type) {
	case nil:
		if !custom {
			return fmt.Errorf("null at %s", where(at))
		}
	case json.Delim:
		switch t {
		case '{':
			keys := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("invalid JSON at %s: %v", where(at), err)
				}
				k, _ := kt.(string)
				if keys[k] {
					return fmt.Errorf("duplicate key %q at %s", k, where(at))
				}
				keys[k] = true
				if err := walkJSON(dec, at+"."+k, depth+1, custom || k == "custom"); err != nil {
					return err
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := walkJSON(dec, fmt.Sprintf("%s[%d]", at, i), depth+1, custom); err != nil {
					return err
				}
			}
		}
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("invalid JSON at %s: %v", where(at), err)
		}
	}
	return nil
}

func where(at string) string {
	if at == "" {
		return "top level"
	}
	return strings.TrimPrefix(at, ".")
}

// FuzzCheckJSON: the one-pass checkJSON and the json.Decoder walk accept
// and refuse the same inputs.
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":null}`, `{"custom":{"x":null}}`, `{"a":1,"a":2}`, `{"a\u0041":1,"aA":2}`,
		`[null]`, `{"targets":{"x":{"custom":[null,{"y":null}]},"y":null}}`, `{"a":"\"null\"","b":[1,2,{"c":true}]}`,
		strings.Repeat("[", 70) + strings.Repeat("]", 70), strings.Repeat("[", 64) + "1" + strings.Repeat("]", 64),
		strings.Repeat("[", 65) + "1" + strings.Repeat("]", 65), `{} {}`, ` {"a" : [ 1 , -2.5e3 , "x" ] } `, "\xef\xbb\xbf{}", `{"a":1}x`, manyKeys(20, -1), manyKeys(20, 3), manyKeys(20, 17), `[` + manyKeys(17, 16) + `,` + manyKeys(40, -1) + `]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := checkJSON(data), refCheckJSON(data)
		if (got == nil) != (want == nil) {
			t.Fatalf("checkJSON: %v, reference: %v", got, want)
		}
	})
}

// FuzzGuardOrder: checkMetadata, which lets json.Unmarshal's validity check
// stand for checkJSON's json.Valid, refuses everything checkJSON refuses,
// with checkJSON's error, before any error of the typed decode.
func FuzzGuardOrder(f *testing.F) {
	s, _ := paymentsRepo(f)
	for i, name := range []string{"1.root.json", "timestamp.json", "2.snapshot.json", "2.targets.json", "1.payments.json"} {
		good := s.get(name)
		f.Add(uint8(i), good)
		f.Add(uint8(i), good[:len(good)/2])
	}
	f.Add(uint8(3), []byte(`{"signed":{"_type":"targets","version":"x","targets":{"a":null}},"signatures":[],"signatures":[]}`))
	f.Add(uint8(3), []byte(`{"signed":{"_type":"targets","version":"x","targets":{"a":null}},"signatures":[]}`))
	f.Add(uint8(3), []byte(`{"signed":{"_type":7,"version":"x"},"signatures":[]} x`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		role := fuzzRoles[int(kind)%len(fuzzRoles)]
		if int64(len(data)) > DefaultMaxRoleSize {
			return
		}
		got := checkMetadata(role, data, DefaultMaxRoleSize)
		if err := checkJSON(data); err != nil {
			want := &Error{Category: ErrMalformed, Role: role, Detail: err.Error()}
			if got == nil || got.Error() != want.Error() {
				t.Fatalf("checkMetadata: %v, checkJSON: %v", got, want)
			}
			return
		}
		// Past checkJSON both are the same code, whose message may name
		// whichever faulty map entry it meets first: compare refusals.
		if want := checkMetadata(role, data, DefaultMaxRoleSize); (got == nil) != (want == nil) {
			t.Fatalf("checkMetadata: %v, then %v", got, want)
		}
	})
}

// manyKeys is an object of n keys k0…k(n-1), the last one a copy of key
// dup when dup >= 0: past smallObject keys scanJSON uses a map.
func manyKeys(n, dup int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		k := i
		if i == n-1 && dup >= 0 {
			k = dup
		}
		fmt.Fprintf(&b, `"k%d":{"k%d":%d}`, k, i, i)
	}
	b.WriteString("}")
	return b.String()
}

// FuzzParseFloor: a trust floor read from a ConfigMap parses strictly or
// fails with ErrMalformed; it never panics, and a parsed floor's root
// passed the guard.
func FuzzParseFloor(f *testing.F) {
	f.Add([]byte(`{"versions":{"root":2,"timestamp":7,"payments":3}}`))
	f.Add([]byte(`{"root":null,"versions":null}`))
	f.Add([]byte(`{"root":{"signed":null},"versions":{}}`))
	f.Add([]byte(`{"versions":{"root":-1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := ParseFloor(data)
		if err != nil {
			if !errors.Is(err, ErrTrust) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, v := range fl.Versions {
			if v < 0 {
				t.Fatalf("negative version accepted")
			}
		}
	})
}
