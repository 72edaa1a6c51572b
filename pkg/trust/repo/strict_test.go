package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// TestDuplicateKeysRefused: the repository uses the client's guard, so a
// proposal with a duplicate JSON key (which go-tuf would read last-wins, a
// different document from what other parsers see) is refused as
// ErrMalformed by Accept and SignProposal, and nothing is written; the
// same proposal without the duplicate is accepted.
func TestDuplicateKeysRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var buf bytes.Buffer
	if err := json.Compact(&buf, craft(t, f, "payments", nil, f.dev)); err != nil {
		t.Fatal(err)
	}
	valid := buf.Bytes()
	inject := func(after, dup string) []byte {
		t.Helper()
		i := bytes.Index(valid, []byte(after))
		if i < 0 {
			t.Fatalf("%s not in the proposal", after)
		}
		i += len(after)
		return append(append(append([]byte(nil), valid[:i]...), dup...), valid[i:]...)
	}
	cases := map[string][]byte{
		"role field twice":      inject(`"signed":{`, `"`+RoleField+`":"targets",`),
		"version twice":         inject(`"signed":{`, `"version":99,`),
		"signatures twice":      inject(`{`, `"signatures":[],`),
		"target key twice":      inject(`"targets":{`, `"`+payAPI+`":{"length":1,"hashes":{"sha256":"00"}},`),
		"escaped duplicate key": inject(`"signed":{`, `"\u0076ersion":99,`),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			before := tree(t, f.dir)
			r, err := Open(f.dir, OpenOptions{Online: f.online})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Accept(ctx, b)
			wantRefusal(t, err, ErrMalformed)
			if !strings.Contains(err.Error(), "duplicate key") {
				t.Fatalf("refusal does not name the duplicate key: %v", err)
			}
			sameTree(t, before, tree(t, f.dir))
			_, err = SignProposal(ctx, b, newKey(t, signing.ED25519))
			wantRefusal(t, err, ErrMalformed)
		})
	}
	f.accept(t, valid)
}
