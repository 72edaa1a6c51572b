package ordinal

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

func TestFromEnvAndBuckets(t *testing.T) {
	for _, c := range []struct {
		pod, svc string
		buckets  uint32
		mode     bool  // StatefulSet mode
		err      error // from FromEnv or CheckBuckets
		msg      string
	}{
		{"", "", 2, false, nil, ""},
		{"stepseal-controller-0", "stepseal-controller", 2, true, nil, ""},
		{"stepseal-controller-1", "stepseal-controller", 2, true, nil, ""},
		{"stepseal-controller-2", "stepseal-controller", 2, true, ErrOutOfRange, "ordinal 2, ConfigMap config-leader-election has buckets 2"},
		{"stepseal-controller-7", "stepseal-controller", 4, true, ErrOutOfRange, "ordinal 7, ConfigMap config-leader-election has buckets 4"},
		{"stepseal-controller-0", "", 2, false, reject.ErrMalformed, "needs both"},
		{"", "stepseal-controller", 2, false, reject.ErrMalformed, "needs both"},
		{"stepseal-controller", "svc", 2, false, reject.ErrMalformed, "is not <statefulset>-<ordinal>"},
		{"controller-x", "svc", 2, false, reject.ErrMalformed, "is not <statefulset>-<ordinal>"},
		{"-1", "svc", 2, false, reject.ErrMalformed, "is not <statefulset>-<ordinal>"},
	} {
		env := map[string]string{EnvOrdinal: c.pod, EnvService: c.svc}
		m, err := FromEnv(func(k string) string { return env[k] })
		if err == nil && m != nil {
			err = m.CheckBuckets(c.buckets)
		}
		if (m != nil) != c.mode {
			t.Errorf("%q %q: StatefulSet mode %v, want %v", c.pod, c.svc, m != nil, c.mode)
		}
		if c.err == nil {
			if err != nil {
				t.Errorf("%q %q buckets %d: %v", c.pod, c.svc, c.buckets, err)
			}
			continue
		}
		if !errors.Is(err, c.err) || !errors.Is(err, reject.ErrRefused) || !strings.Contains(fmtErr(err), c.msg) {
			t.Errorf("%q %q buckets %d: %v, want %v (a refusal) saying %q", c.pod, c.svc, c.buckets, err, c.err, c.msg)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
