// Command trustbench measures stepseal's TUF client (pkg/trust) against
// go-tuf v2.4.2's plain updater on the same generated repository: -roles
// delegated roles of -targets targets each, served over loopback HTTP.
// Each measurement runs in a child process of its own so that CPU time and
// peak RSS are its alone. Used by hack/bench/trust.sh.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/stepseal/stepseal/pkg/trust"
)

type result struct {
	Name     string  `json:"name"`
	WallMS   float64 `json:"wallMs"`
	CPUMS    float64 `json:"cpuMs"`
	RSSMiB   float64 `json:"rssMiB"`
	Requests int64   `json:"requests"`
	Bytes    int64   `json:"bytes"`
	Lookups  int     `json:"lookups"`
	LookupUS float64 `json:"lookupUs,omitempty"`
	// FirstLookupUS is stepseal's first lookup in each role, which checks
	// the role's signatures once more to name the keys that signed it.
	FirstLookupUS float64 `json:"firstLookupUs,omitempty"`
	// AgainMS and AgainCPUMS: stepseal's next refresh in the same process.
	AgainMS    float64 `json:"againMs,omitempty"`
	AgainCPUMS float64 `json:"againCpuMs,omitempty"`
	// WorkCPUMS is the CPU time (user + sys) of the refresh and the first
	// round of lookups, in the child (without process start and exit).
	WorkCPUMS float64 `json:"workCpuMs,omitempty"`
	// RefreshMS is the wall time of Refresh alone, in the child.
	RefreshMS float64 `json:"refreshMs"`
	Err       string  `json:"error,omitempty"`
}

func main() {
	roles := flag.Int("roles", 1000, "delegated roles")
	targets := flag.Int("targets", 100, "targets per role")
	child := flag.String("child", "", "internal: run one measurement")
	only := flag.String("only", "", "comma-separated runs to do (default: all)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of each child's refresh and first lookups to this prefix")
	repo := flag.String("repo", "", "internal: repository directory")
	url := flag.String("url", "", "internal: metadata URL")
	cache := flag.String("cache", "", "internal: cache directory")
	flag.Parse()
	if *child != "" {
		runChild(*child, *repo, *url, *cache, *roles, *targets, *cpuprofile)
		return
	}
	work, err := os.MkdirTemp("", "trustbench-")
	check(err)
	defer os.RemoveAll(work)
	repoDir := filepath.Join(work, "repo")
	t0 := time.Now()
	check(generate(repoDir, *roles, *targets))
	fmt.Printf("repository: %d roles x %d targets (%d targets) generated in %s\n", *roles, *targets, *roles**targets, time.Since(t0).Round(time.Millisecond))
	for _, f := range []string{"1.targets.json", "1.snapshot.json", "1.role-0000.json"} {
		if st, err := os.Stat(filepath.Join(repoDir, "metadata", f)); err == nil {
			fmt.Printf("  %-18s %9d B\n", f, st.Size())
		}
	}
	var requests, bytes atomic.Int64
	fs := http.FileServer(http.Dir(repoDir))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fs.ServeHTTP(countingWriter{w, &bytes}, r)
	}))
	metaURL := "http://" + ln.Addr().String() + "/metadata"
	run := func(name, cacheDir string) result {
		requests.Store(0)
		bytes.Store(0)
		prof := ""
		if *cpuprofile != "" {
			prof = *cpuprofile + "." + name
		}
		cmd := exec.Command(os.Args[0], "-child", name, "-repo", repoDir, "-url", metaURL, "-cache", cacheDir,
			"-roles", strconv.Itoa(*roles), "-targets", strconv.Itoa(*targets), "-cpuprofile", prof)
		cmd.Stderr = os.Stderr
		start := time.Now()
		out, err := cmd.Output()
		wall := time.Since(start)
		var r result
		if err != nil {
			r.Err = err.Error()
		} else if err := json.Unmarshal(out, &r); err != nil {
			r.Err = err.Error()
		}
		r.Name, r.WallMS = name, ms(wall)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.CPUMS = ms(time.Duration(ru.Utime.Nano() + ru.Stime.Nano()))
			r.RSSMiB = float64(ru.Maxrss) / 1024
		}
		r.Requests, r.Bytes = requests.Load(), bytes.Load()
		return r
	}
	ours, theirs := filepath.Join(work, "cache-stepseal"), filepath.Join(work, "cache-gotuf")
	var results []result
	for _, r := range []struct{ name, cache string }{
		{"stepseal-cold-1", ours},
		{"stepseal-warm-1", ours},
		{"stepseal-cold-all", filepath.Join(work, "cache-stepseal-all")},
		{"stepseal-warm-all", filepath.Join(work, "cache-stepseal-all")},
		{"stepseal-full", filepath.Join(work, "cache-stepseal-full")},
		{"gotuf-cold-1", theirs},
		{"gotuf-warm-1", theirs},
		{"gotuf-cold-all", filepath.Join(work, "cache-gotuf-all")},
		{"gotuf-warm-all", filepath.Join(work, "cache-gotuf-all")},
	} {
		if *only == "" || strings.Contains(","+*only+",", ","+r.name+",") {
			results = append(results, run(r.name, r.cache))
		}
	}
	fmt.Printf("\n%-17s %9s %10s %9s %11s %8s %9s %11s %8s %10s %9s\n", "run", "wall ms", "refresh ms", "CPU ms", "work CPU ms", "RSS MiB", "requests", "bytes", "lookups", "µs/lookup", "µs/first")
	for _, r := range results {
		fmt.Printf("%-17s %9.0f %10.0f %9.0f %11.0f %8.0f %9d %11d %8d %10.1f %9.1f %s\n", r.Name, r.WallMS, r.RefreshMS, r.CPUMS, r.WorkCPUMS, r.RSSMiB, r.Requests, r.Bytes, r.Lookups, r.LookupUS, r.FirstLookupUS, r.Err)
	}
	fmt.Println("(CPU ms: the whole child process, user + sys; work CPU ms: its refresh and first round of lookups only;")
	fmt.Println(" requests and bytes: everything the child asked for, stepseal's second refresh in the same process included)")
	for _, r := range results {
		if r.AgainMS > 0 {
			fmt.Printf("%s, then a refresh in the same process: %.0f ms wall, %.0f ms CPU (its 2 requests are counted in the row above)\n", r.Name, r.AgainMS, r.AgainCPUMS)
		}
	}
	by := map[string]result{}
	for _, r := range results {
		by[r.Name] = r
	}
	ratio := func(a, b string) {
		if by[b].CPUMS > 0 {
			fmt.Printf("CPU %s / %s = %.2f\n", a, b, by[a].CPUMS/by[b].CPUMS)
		}
	}
	fmt.Println()
	ratio("stepseal-cold-1", "gotuf-cold-1")
	ratio("stepseal-warm-1", "gotuf-warm-1")
	ratio("stepseal-cold-all", "gotuf-cold-all")
	ratio("stepseal-warm-all", "gotuf-warm-all")
	fmt.Println("(both load the roles a lookup walks through; stepseal-full is Refresh + LoadAll, the full check of trust status --all;")
	fmt.Println(" µs/first is the first lookup, loading its role; µs/lookup a lookup on a loaded role)")
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	w.n.Add(int64(len(b)))
	return w.ResponseWriter.Write(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "trustbench:", err)
		os.Exit(1)
	}
}

// profile starts a CPU profile written to path ("" : none) and returns
// what stops it.
func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	check(err)
	check(pprof.StartCPUProfile(f))
	return func() { pprof.StopCPUProfile(); check(f.Close()) }
}

func roleName(i int) string { return fmt.Sprintf("role-%04d", i) }

func targetPath(role, j int) string { return fmt.Sprintf("images/%s/artifact-%03d", roleName(role), j) }

// runChild performs one measurement and prints its result as JSON.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runChild(name, repo, url, cache string, roles, targets int, cpuprofile string) {
	root, err := os.ReadFile(filepath.Join(repo, "metadata", "1.root.json"))
	check(err)
	var r result
	lookups := []string{targetPath(roles/2, 0)}
	if name == "gotuf-cold-all" || name == "gotuf-warm-all" || name == "stepseal-cold-all" || name == "stepseal-warm-all" {
		lookups = lookups[:0]
		for i := 0; i < roles; i++ {
			lookups = append(lookups, targetPath(i, i%targets))
		}
	}
	r.Lookups = len(lookups)
	switch name {
	case "stepseal-cold-1", "stepseal-warm-1", "stepseal-cold-all", "stepseal-warm-all", "stepseal-full":
		c, err := trust.NewClient(context.Background(), trust.ClientOptions{Source: url, CacheDir: cache, BootstrapRoot: root, MaxRoles: roles + 1})
		check(err)
		stop := profile(cpuprofile)
		cpu0 := cpuNow()
		start := time.Now()
		_, err = c.Refresh(context.Background())
		check(err)
		if name == "stepseal-full" {
			// trust status --all: every role loaded and checked.
			check(c.LoadAll(context.Background()))
		}
		r.RefreshMS = ms(time.Since(start))
		start = time.Now()
		for _, p := range lookups {
			_, err := c.Resolve(context.Background(), p)
			check(err)
		}
		r.FirstLookupUS = float64(time.Since(start).Microseconds()) / float64(len(lookups))
		r.WorkCPUMS = ms(cpuNow() - cpu0)
		stop()
		// Again, on loaded roles whose signing key IDs are now known
		// (1 000 times over for a single lookup, to time it).
		n := 1
		if len(lookups) == 1 {
			n = 1000
		}
		start = time.Now()
		for i := 0; i < n; i++ {
			for _, p := range lookups {
				_, err := c.Resolve(context.Background(), p)
				check(err)
			}
		}
		r.LookupUS = float64(time.Since(start).Microseconds()) / float64(n*len(lookups))
		// A long-running verifier refreshes again in the same process: only
		// what changed is verified again (here nothing). Not in the runs
		// of one lookup, whose peak RSS is compared with go-tuf's.
		if strings.HasSuffix(name, "-1") {
			break
		}
		var ru0, ru1 syscall.Rusage
		check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru0))
		start = time.Now()
		_, err = c.Refresh(context.Background())
		check(err)
		r.AgainMS = ms(time.Since(start))
		check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru1))
		r.AgainCPUMS = ms(time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()))
	default:
		if b, err := os.ReadFile(filepath.Join(cache, "root.json")); err == nil {
			root = b // go-tuf's own cache, as a careful caller does
		}
		cfg, err := config.New(url, root)
		check(err)
		cfg.LocalMetadataDir, cfg.LocalTargetsDir = cache, cache
		cfg.SetDefaultFetcherHTTPClient(&http.Client{Timeout: 30 * time.Second})
		stop := profile(cpuprofile)
		cpu0 := cpuNow()
		u, err := updater.New(cfg)
		check(err)
		start := time.Now()
		check(u.Refresh())
		r.RefreshMS = ms(time.Since(start))
		start = time.Now()
		for _, p := range lookups {
			_, err := u.GetTargetInfo(p)
			check(err)
		}
		r.LookupUS = float64(time.Since(start).Microseconds()) / float64(len(lookups))
		r.WorkCPUMS = ms(cpuNow() - cpu0)
		stop()
	}
	check(json.NewEncoder(os.Stdout).Encode(r))
}

type key struct {
	k  *metadata.Key
	id string
	s  signature.Signer
}

func newKey() key {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	check(err)
	k, err := metadata.KeyFromPublicKey(pub)
	check(err)
	id, err := k.ID()
	check(err)
	s, err := signature.LoadED25519Signer(priv)
	check(err)
	return key{k, id, s}
}

func write[T metadata.Roles](dir, name string, md *metadata.Metadata[T], k key) []byte {
	_, err := md.Sign(k.s)
	check(err)
	data, err := md.ToBytes(false)
	check(err)
	check(os.WriteFile(filepath.Join(dir, name), data, 0o644))
	return data
}

// generate writes a consistent-snapshot repository: targets delegates
// images/role-NNNN/* to role-NNNN (terminating, one key each), each role
// lists its targets; snapshot and timestamp carry length and sha256.
func generate(dir string, roles, targets int) error {
	md := filepath.Join(dir, "metadata")
	if err := os.MkdirAll(md, 0o755); err != nil {
		return err
	}
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	root := metadata.Root(exp)
	top := map[string]key{}
	for _, r := range []string{"root", "timestamp", "snapshot", "targets"} {
		top[r] = newKey()
		check(root.Signed.AddKey(top[r].k, r))
	}
	write(md, "1.root.json", root, top["root"])
	tg := metadata.Targets(exp)
	tg.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	snap := metadata.Snapshot(exp)
	for i := 0; i < roles; i++ {
		k := newKey()
		name := roleName(i)
		tg.Signed.Delegations.Keys[k.id] = k.k
		tg.Signed.Delegations.Roles = append(tg.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: name, KeyIDs: []string{k.id}, Threshold: 1, Terminating: true, Paths: []string{"images/" + name + "/*"}})
		role := metadata.Targets(exp)
		for j := 0; j < targets; j++ {
			p := targetPath(i, j)
			tf, err := metadata.TargetFile().FromBytes(p, []byte(p), "sha256")
			check(err)
			role.Signed.Targets[p] = tf
		}
		data := write(md, "1."+name+".json", role, k)
		snap.Signed.Meta[name+".json"] = metaOf(1, data)
	}
	data := write(md, "1.targets.json", tg, top["targets"])
	snap.Signed.Meta["targets.json"] = metaOf(1, data)
	data = write(md, "1.snapshot.json", snap, top["snapshot"])
	ts := metadata.Timestamp(exp)
	ts.Signed.Meta["snapshot.json"] = metaOf(1, data)
	write(md, "timestamp.json", ts, top["timestamp"])
	return nil
}

func metaOf(v int64, data []byte) *metadata.MetaFiles {
	m := metadata.MetaFile(v)
	m.Length = int64(len(data))
	tf, err := metadata.TargetFile().FromBytes("x", data, "sha256")
	check(err)
	m.Hashes = tf.Hashes
	return m
}
