package reject

import (
	"errors"
	"fmt"
	"testing"
)

func TestSentinelMatchesReasonAndRoot(t *testing.T) {
	errRollback := Sentinel(ErrRollback, "checkpoint rolled back")
	err := fmt.Errorf("log %q: %w: size 3 after 5", "x", errRollback)
	for _, target := range []error{errRollback, ErrRollback, ErrRefused} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false", err, target)
		}
	}
	for _, target := range []error{ErrSignature, ErrUnableToCheck, ErrUnavailable} {
		if errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = true", err, target)
		}
	}
	if Of(err) != ErrRollback {
		t.Errorf("Of = %v", Of(err))
	}
	down := fmt.Errorf("registry: %w", Sentinel(ErrUnavailable, "registry unreachable"))
	if !errors.Is(down, ErrUnableToCheck) || errors.Is(down, ErrRefused) || Of(down) != ErrUnavailable || Of(down).Refused() {
		t.Errorf("an unavailable registry is a failure to check, not a refusal: %v", down)
	}
	if Of(errors.New("bug")) != nil {
		t.Error("an error of no reason has a reason")
	}
}

func TestEveryReasonHasOneRoot(t *testing.T) {
	for _, r := range all {
		if errors.Is(r, ErrRefused) == errors.Is(r, ErrUnableToCheck) {
			t.Errorf("%v: refused %v, unable %v", r, errors.Is(r, ErrRefused), errors.Is(r, ErrUnableToCheck))
		}
	}
}
