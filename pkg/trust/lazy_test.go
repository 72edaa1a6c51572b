package trust

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestLazyConcurrent resolves paths in many roles from many goroutines
// while refreshes swap states: every answer is right, each role is fetched
// at most once per state, and a release invalidates the loaded role.
func TestLazyConcurrent(t *testing.T) {
	s := newSim(t)
	const n = 12
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("team-%02d", i)
		s.delegate("targets", name, []string{"t" + fmt.Sprint(i) + "/*"}, true, 1, 1)
		s.addTarget(name, fmt.Sprintf("t%d/x", i), []byte(name))
	}
	s.bump("targets")
	s.publish()
	c := s.clientFor(t, t.TempDir())
	mustRefresh(t, c)
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 3*n; k++ {
				i := (g + k) % n
				r, err := c.Resolve(ctx, fmt.Sprintf("t%d/x", i))
				if err != nil || r.Role != fmt.Sprintf("team-%02d", i) || len(r.SignedBy) != 1 {
					t.Errorf("%+v %v", r, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	s.mu.Lock()
	if len(s.requests) != n {
		t.Errorf("%d roles loaded with requests %v", n, s.requests)
	}
	s.mu.Unlock()
	if st := c.Status(ctx); st.Loaded != n || st.Delegated != n || st.AllLoaded {
		t.Errorf("status %+v", st)
	}

	// A release of one role while lookups run: after the refresh, the new
	// version is the one resolved.
	s.bump("team-03")
	s.addTarget("team-03", "t3/y", []byte("y"))
	s.publish()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < n; k++ {
				if _, err := c.Resolve(ctx, fmt.Sprintf("t%d/x", k)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	mustRefresh(t, c)
	wg.Wait()
	if r, err := c.Resolve(ctx, "t3/y"); err != nil || r.RoleVersion != 2 {
		t.Errorf("%+v %v", r, err)
	}
	if err := c.LoadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(ctx); st.Loaded != n || !st.AllLoaded {
		t.Errorf("status after LoadAll %+v", st)
	}
}

// FuzzMayMatch checks that the prefilter never drops a delegation go-tuf
// would match.
func FuzzMayMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"images/payments/*", "images/payments/api"}, {"images/*/x", "images/a/x"}, {"a/[bc]/d", "a/b/d"},
		{`a/\*`, "a/*"}, {"?x", "yx"}, {"images/pay", "images/payments"}, {"", ""}, {"a/b", "a/b"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		dr := &metadata.DelegatedRole{Name: "r", Paths: []string{pattern}}
		ok, err := dr.IsDelegatedPath(path)
		if err == nil && ok && !mayMatch(dr, path) {
			t.Fatalf("%q matches %q but mayMatch is false", pattern, path)
		}
	})
}

// TestLazyTransientFailure: a role the repository fails to serve once is
// not remembered as refused: the next lookup loads it.
func TestLazyTransientFailure(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	mustRefresh(t, c)
	before := cacheState(t, dir)
	s.mu.Lock()
	s.intercept = func(name string, w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(name, "payments.json") {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	s.mu.Unlock()
	_, err := c.Resolve(ctx, "images/payments/api")
	wantErr(t, err, ErrUnavailable)
	if after := cacheState(t, dir); !maps.Equal(before, after) {
		t.Error("cache changed by a failed lookup")
	}
	s.mu.Lock()
	s.intercept = nil
	s.mu.Unlock()
	if r, err := c.Resolve(ctx, "images/payments/api"); err != nil || r.Role != "payments" {
		t.Fatalf("%+v %v", r, err)
	}
	// A refusal (tampered bytes) is remembered: no second download.
	s.bump("payments")
	s.publish()
	mustRefresh(t, c)
	name := ""
	for n := range s.files {
		if strings.HasSuffix(n, ".payments.json") && strings.HasPrefix(n, "2.") {
			name = n
		}
	}
	good := s.get(name)
	s.set(name, []byte(strings.Replace(string(good), `"version": 2`, `"version": 2 `, 1)+" "))
	_, err = c.Resolve(ctx, "images/payments/api")
	if err == nil {
		t.Fatal("tampered role accepted")
	}
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
	_, err2 := c.Resolve(ctx, "images/payments/api")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err2 == nil || len(s.requests) != 0 {
		t.Errorf("refusal not remembered: %v, requests %v", err2, s.requests)
	}
}

// A long-running verifier refuses metadata that expired after the refresh
// that verified it (a freeze), naming the role, until a refresh brings
// newer metadata.
func TestResolveRefusesMetadataExpiredSinceRefresh(t *testing.T) {
	s, sum := paymentsRepo(t)
	now := time.Now()
	c := s.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.Now = func() time.Time { return now } })
	mustRefresh(t, c)
	if _, err := c.VerifyArtifact(ctx, "images/payments/api", sum, int64(len("api v1"))); err != nil {
		t.Fatal(err)
	}
	now = s.expires.Add(time.Second)
	_, err := c.VerifyArtifact(ctx, "images/payments/api", sum, int64(len("api v1")))
	var te *Error
	if !errors.Is(err, ErrFreeze) || !errors.As(err, &te) || te.Role == "" || !strings.Contains(err.Error(), "refresh first") {
		t.Fatalf("want ErrFreeze naming the expired role, got %v", err)
	}
}
