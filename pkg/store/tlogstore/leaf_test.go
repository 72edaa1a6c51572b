package tlogstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// EncodeLeaf never inlines the document, inlines the subjects when they
// fit, and ParseLeaf reads back what it binds; the Store reads such a
// record as one whose document is elsewhere.
func TestLeaf(t *testing.T) {
	for _, n := range []int{0, 3, 2000} {
		subjects := make([]string, n)
		for i := range subjects {
			subjects[i] = fmt.Sprintf("sha256:%064x", i)
		}
		e := store.Entry{Kind: store.KindLink, Name: "a.b", RunID: "r", Data: []byte("small document"), Subjects: subjects}
		if err := store.Validate(&e); err != nil {
			t.Fatal(err)
		}
		b, err := EncodeLeaf(e)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"data"`) {
			t.Errorf("%d subjects: the leaf holds the document: %.200s", n, b)
		}
		if inline := strings.Contains(string(b), `"subjects"`); inline != (n > 0 && n < 800) {
			t.Errorf("%d subjects: inline %v", n, inline)
		}
		l, err := ParseLeaf(b)
		if err != nil {
			t.Fatal(err)
		}
		if l.Digest != e.Digest || l.Size != len(e.Data) || l.Kind != e.Kind || l.Name != e.Name || l.RunID != e.RunID ||
			l.SubjectCount != n || l.SubjectsDigest != SubjectsDigest(e.Subjects) {
			t.Errorf("%d subjects: ParseLeaf = %+v", n, l)
		}
	}
	if _, err := ParseLeaf([]byte(`{"type":"other"}`)); err == nil {
		t.Error("ParseLeaf accepted a record of another type")
	}
}
