// Command admissionload is the set-up and load generator of
// hack/bench/admission.sh.
//
//	admissionload -mode setup -registry HOST:PORT -port P -images N -out DIR
//
// pushes one signed "warm" image and N signed "cold" images (random, one
// layer) to the registry, signs them with a fresh key, and server-side
// applies controllers/config/admission/*.yaml with the policy "apps"
// (require: signed, that key), the Service as ExternalName localhost and
// the webhooks' port P (no kube-proxy here); it labels the namespace
// bench-webhook stepseal.dev/admission=enforce and creates bench-baseline
// without the label. The cold images' references go to DIR/cold.txt, the
// warm one to DIR/warm.txt.
//
//	admissionload -mode load -c 1,50,200 -n 200 -out DIR
//
// creates, for each concurrency C, N Pods with C creators in bench-baseline
// (no webhook), N in bench-webhook naming the warm image (cached after the
// first), and N in bench-webhook each naming a cold image never seen
// before, and prints Pod CREATE latency p50/p99 per case and the webhook's
// added latency (case minus baseline).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
)

const (
	webhookNS  = "bench-webhook"
	baselineNS = "bench-baseline"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	mode := flag.String("mode", "load", "setup or load")
	registry := flag.String("registry", "", "setup: registry HOST:PORT (plain HTTP, loopback)")
	port := flag.Int("port", 0, "setup: the webhook's port on 127.0.0.1")
	images := flag.Int("images", 251, "setup: cold images to push")
	config := flag.String("config", "controllers/config/admission", "setup: the webhook's release YAML")
	conc := flag.String("c", "1,50,200", "load: concurrency levels")
	n := flag.Int("n", 200, "load: Pods per case and concurrency")
	pids := flag.String("pids", "", "load, profile: NAME=PID,... processes whose CPU time per Pod is reported (apiserver=…,etcd=…,webhook=…)")
	dur := flag.Duration("d", 10*time.Second, "profile: how long each case creates Pods")
	prof := flag.String("prof", "", "profile: directory for the kube-apiserver's CPU profiles (<case>.pprof)")
	out := flag.String("out", ".", "directory for warm.txt and cold.txt")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 5000, 10000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	switch *mode {
	case "setup":
		err = setup(ctx, cfg, *registry, *port, *images, *config, *out)
	case "load":
		err = load(ctx, cfg, *conc, *n, *out, *pids)
	case "profile":
		err = profile(ctx, cfg, *conc, *dur, *out, *pids, *prof)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func setup(ctx context.Context, cfg *rest.Config, registry string, port, images int, config, out string) error {
	if registry == "" || port == 0 {
		return errors.New("setup needs -registry and -port")
	}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		return err
	}
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		return err
	}
	pub, err := signing.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	push := func(repo string) (string, error) {
		img, err := random.Image(512, 1)
		if err != nil {
			return "", err
		}
		tag, err := name.NewTag(registry+"/"+repo+":v1", name.Insecure)
		if err != nil {
			return "", err
		}
		if err := remote.Write(tag, img); err != nil {
			return "", err
		}
		h, err := img.Digest()
		if err != nil {
			return "", err
		}
		d := tag.Context().Digest(h.String())
		return d.String(), c.Sign(ctx, d, key)
	}
	start := time.Now()
	warm, err := push("apps/warm")
	if err != nil {
		return err
	}
	cold := make([]string, images)
	var wg sync.WaitGroup
	errs := make([]error, images)
	sem := make(chan struct{}, 8)
	for i := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cold[i], errs[i] = push(fmt.Sprintf("apps/cold-%04d", i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Printf("pushed and signed %d images in %v", images+1, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(filepath.Join(out, "warm.txt"), []byte(warm+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "cold.txt"), []byte(strings.Join(cold, "\n")+"\n"), 0o644); err != nil {
		return err
	}

	pol := fmt.Sprintf("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- name: apps\n  images: [%q]\n  require: signed\n  keys: [%q]\n",
		registry+"/apps/**", string(pub))
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, ns := range []string{"stepseal", webhookNS, baselineNS} {
		o := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if ns == webhookNS {
			o.Labels = map[string]string{"stepseal.dev/admission": "enforce"}
		}
		if _, err := kube.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	objs, err := objects(config)
	if err != nil {
		return err
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "Service":
			o.Object["spec"] = map[string]any{"type": "ExternalName", "externalName": "localhost"}
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			whs, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			for _, wh := range whs {
				_ = unstructured.SetNestedField(wh.(map[string]any), int64(port), "clientConfig", "service", "port")
			}
			_ = unstructured.SetNestedSlice(o.Object, whs, "webhooks")
		case "ConfigMap":
			_ = unstructured.SetNestedField(o.Object, pol, "data", admission.PolicyKey)
		}
	}
	return apply(ctx, cfg, objs)
}

func objects(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no YAML in %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(obj) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: obj})
			}
		}
	}
	return objs, nil
}

func apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "admissionload", Force: true}); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
	return nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, s.Err()
}

// run creates n Pods with c creators; image(i) names the i-th Pod's image.
// It returns each create's latency, and the first error.
func run(ctx context.Context, kube kubernetes.Interface, ns, prefix string, c, n int, image func(int) string) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i), Namespace: ns},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image(i)}}}}
				t0 := time.Now()
				_, errs[i] = kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				lat[i] = time.Since(t0)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return lat, errors.Join(errs...)
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func load(ctx context.Context, cfg *rest.Config, conc string, n int, out, pidList string) error {
	procs, err := parsePIDs(pidList)
	if err != nil {
		return err
	}
	procs = append(procs, proc{"loadgen", os.Getpid()})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	warm, err := readLines(filepath.Join(out, "warm.txt"))
	if err != nil {
		return err
	}
	var cpuLines []string
	cold, err := readLines(filepath.Join(out, "cold.txt"))
	if err != nil {
		return err
	}
	var levels []int
	for _, f := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		levels = append(levels, c)
	}
	if need := n * len(levels); len(cold) < need {
		return fmt.Errorf("%d cold images, need %d (-n × levels)", len(cold), need)
	}
	fl, err := startFloor()
	if err != nil {
		return err
	}
	defer fl.srv.Close()
	if err := fl.install(ctx, kube); err != nil {
		return err
	}
	// Prime: the client connected, the warm digest's verdict cached, the
	// apiserver's webhook clients connected.
	for _, ns := range []string{baselineNS, webhookNS} {
		if _, err := run(ctx, kube, ns, "prime", 1, 1, func(int) string { return warm[0] }); err != nil {
			return fmt.Errorf("priming %s: %w", ns, err)
		}
	}
	if err := fl.prime(ctx, kube, warm[0]); err != nil {
		return err
	}
	var floorLines []string
	fmt.Printf("%-5s %-22s %-22s %-22s %-18s %-18s\n", "conc", "baseline p50/p99 ms", "warm p50/p99 ms", "cold p50/p99 ms", "warm added p50/p99", "cold added p50/p99")
	coldNext := 0
	for _, c := range levels {
		t0 := procs.sample()
		base, err := run(ctx, kube, baselineNS, fmt.Sprintf("base-c%d", c), c, n, func(int) string { return warm[0] })
		if err != nil {
			return fmt.Errorf("baseline c=%d: %w", c, err)
		}
		t1 := procs.sample()
		w, err := run(ctx, kube, webhookNS, fmt.Sprintf("warm-c%d", c), c, n, func(int) string { return warm[0] })
		if err != nil {
			return fmt.Errorf("warm c=%d: %w", c, err)
		}
		t2 := procs.sample()
		first := coldNext
		coldNext += n
		cd, err := run(ctx, kube, webhookNS, fmt.Sprintf("cold-c%d", c), c, n, func(i int) string { return cold[first+i] })
		if err != nil {
			return fmt.Errorf("cold c=%d: %w", c, err)
		}
		t3 := procs.sample()
		fd, err := run(ctx, kube, floorNS, fmt.Sprintf("floor-c%d", c), c, n, func(int) string { return warm[0] })
		if err != nil {
			return fmt.Errorf("floor c=%d: %w", c, err)
		}
		t4 := procs.sample()
		if len(procs) > 0 {
			cpuLines = append(cpuLines,
				fmt.Sprintf("%-5d %-9s %s", c, "baseline", procs.perPod(t0, t1, n)),
				fmt.Sprintf("%-5d %-9s %s", c, "warm", procs.perPod(t1, t2, n)),
				fmt.Sprintf("%-5d %-9s %s", c, "cold", procs.perPod(t2, t3, n)),
				fmt.Sprintf("%-5d %-9s %s", c, "floor", procs.perPod(t3, t4, n)))
		}
		b50, b99 := pct(base, .5), pct(base, .99)
		w50, w99 := pct(w, .5), pct(w, .99)
		c50, c99 := pct(cd, .5), pct(cd, .99)
		fmt.Printf("%-5d %-22s %-22s %-22s %-18s %-18s\n", c,
			ms(b50)+" / "+ms(b99), ms(w50)+" / "+ms(w99), ms(c50)+" / "+ms(c99),
			ms(w50-b50)+" / "+ms(w99-b99), ms(c50-b50)+" / "+ms(c99-b99))
		f50, f99 := pct(fd, .5), pct(fd, .99)
		floorLines = append(floorLines, fmt.Sprintf("%-5d %-22s %-18s %-18s", c,
			ms(f50)+" / "+ms(f99), ms(f50-b50)+" / "+ms(f99-b99), ms(w50-f50)+" / "+ms(w99-f99)))
	}
	fmt.Printf("\nfloor (a validating webhook that allows without looking, in the load generator; %d reviews):\n%-5s %-22s %-18s %-18s\n",
		fl.reviews.Load(), "conc", "floor p50/p99 ms", "floor added p50/p99", "warm minus floor p50/p99")
	for _, l := range floorLines {
		fmt.Println(l)
	}
	if len(cpuLines) > 0 {
		fmt.Printf("\nCPU ms per Pod CREATE (from /proc/PID/stat utime+stime, %d Hz ticks):\n%-5s %-9s %s\n", clockTicks, "conc", "case", procs.header())
		for _, l := range cpuLines {
			fmt.Println(l)
		}
	}
	return nil
}
