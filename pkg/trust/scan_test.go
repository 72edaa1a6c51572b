package trust

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestScanJSONManyKeys: duplicate keys are found on either side of the
// switch from comparing keys one by one to a map, and keys of nested
// objects do not collide with their parent's.
func TestScanJSONManyKeys(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{manyKeys(smallObject, -1), true},
		{manyKeys(smallObject+1, -1), true},
		{manyKeys(60, -1), true},
		{manyKeys(smallObject, 0), false},
		{manyKeys(smallObject+1, 2), false},
		{manyKeys(smallObject+2, smallObject), false},
		{manyKeys(60, 59-1), false},
		{manyKeys(60, 5), false},
		{`[` + manyKeys(30, -1) + `,` + manyKeys(30, -1) + `]`, true},
		{`{"a":` + manyKeys(30, -1) + `,"b":` + manyKeys(30, 29-1) + `}`, false},
		{`{"a\u0041":1,"aA":2}`, false},
	} {
		if err := checkJSON([]byte(tc.in)); (err == nil) != tc.ok {
			t.Errorf("checkJSON(%.60s…) = %v, want ok %v", tc.in, err, tc.ok)
		}
		if err := refCheckJSON([]byte(tc.in)); (err == nil) != tc.ok {
			t.Errorf("refCheckJSON(%.60s…) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

// TestCheckRoleKeysTwice: a key ID listed twice is refused in short lists
// (compared one by one) and long ones (a map), and only then.
func TestCheckRoleKeysTwice(t *testing.T) {
	keys := map[string]mdKey{}
	for _, n := range []int{1, 2, smallObject, smallObject + 1, 40} {
		var ids []string
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("k%d", i)
			keys[id] = mdKey{}
			ids = append(ids, id)
		}
		one := int64(1)
		if err := checkRoleKeys("r", &ids, &one, keys); err != nil {
			t.Errorf("%d distinct keys: %v", n, err)
		}
		for _, at := range []int{0, n - 1} {
			twice := append(slices.Clone(ids), ids[at])
			var rk *RoleKeysError
			if err := checkRoleKeys("r", &twice, &one, keys); !errors.As(err, &rk) || rk.Key != ids[at] || rk.Detail != "key listed twice" {
				t.Errorf("%d keys and %s again: %v", n, ids[at], err)
			}
		}
	}
}
