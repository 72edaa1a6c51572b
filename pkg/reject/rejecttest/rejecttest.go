package rejecttest

import (
	"errors"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Is fails t unless errors.Is(err, r), reject.Of(err) is r, and err matches
// r's root and not the other one.
func Is(t testing.TB, what string, err error, r *reject.Reason) {
	t.Helper()
	refused, unable := errors.Is(err, reject.ErrRefused), errors.Is(err, reject.ErrUnableToCheck)
	if !errors.Is(err, r) || reject.Of(err) != r || refused != r.Refused() || unable == r.Refused() {
		t.Errorf("%s: %v: want reason %v (refused %v); got reason %v, refused %v, unable to check %v",
			what, err, r, r.Refused(), reject.Of(err), refused, unable)
	}
}
