// Command loadtaskruns is the load generator and stopwatch of
// hack/bench/controller.sh.
//
//	loadtaskruns -mode create -namespace NS -n 1000 [-steps 5] [-annotate k=v]
//
// creates N TaskRuns of S steps and finishes them the way Tekton's controller
// does (kubetest.FinishTaskRun), as fast as the apiserver takes them;
// -annotate pre-annotates them (e.g. as already signed, to fill informer
// caches).
//
//	loadtaskruns -mode watch -namespace NS -n 1000 -annotation stepseal.dev/signed
//
// watches the namespace until N TaskRuns carry annotation=true, noting when
// each annotation appeared, then prints TaskRuns signed per second (N over
// the time from the first completionTime to the last signature) and the
// completion→signed latency p50/p99.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/internal/kubetest"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	mode := flag.String("mode", "create", "create or watch")
	ns := flag.String("namespace", "", "namespace")
	n := flag.Int("n", 1000, "number of TaskRuns")
	steps := flag.Int("steps", 5, "steps per TaskRun")
	workers := flag.Int("workers", 16, "parallel creators")
	prefix := flag.String("prefix", "tr", "name prefix")
	annotate := flag.String("annotate", "", "key=value annotation set on creation")
	annotation := flag.String("annotation", annotations.Signed, "watch: annotation that must be \"true\"")
	label := flag.String("label", "", "watch: printed label")
	timeout := flag.Duration("timeout", 30*time.Minute, "overall timeout")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	client := versioned.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	switch *mode {
	case "create":
		start := time.Now()
		create(ctx, client, *ns, *prefix, *n, *steps, *workers, *annotate)
		el := time.Since(start)
		fmt.Printf("created and finished %d TaskRuns of %d steps in %s: %.0f/s\n", *n, *steps, el.Round(time.Millisecond), float64(*n)/el.Seconds())
	case "watch":
		watchSigned(ctx, client, *ns, *n, *annotation, *label)
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
}

func create(ctx context.Context, client versioned.Interface, ns, prefix string, n, nsteps, workers int, annotate string) {
	var steps []v1.Step
	for i := range nsteps {
		steps = append(steps, v1.Step{Name: fmt.Sprintf("step-%d", i), Image: fmt.Sprintf("registry.example.com/tool-%d:1", i)})
	}
	var ann map[string]string
	if k, v, ok := strings.Cut(annotate, "="); ok {
		ann = map[string]string{k: v}
	}
	idx := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				tr := &v1.TaskRun{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i), Namespace: ns, Annotations: ann},
					Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: steps}},
				}
				tr, err := client.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{})
				if err != nil {
					log.Fatal(err)
				}
				opts := kubetest.FinishOptions{Results: []v1.TaskRunResult{
					{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("registry.example.com/app")},
					{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(fmt.Sprintf("sha256:%064x", i+1))},
				}}
				if _, err := kubetest.FinishTaskRun(ctx, client, tr, opts); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
}

func watchSigned(ctx context.Context, client versioned.Interface, ns string, n int, annotation, label string) {
	seen := map[string]time.Time{}      // name -> when the annotation was first seen
	completed := map[string]time.Time{} // name -> completionTime
	note := func(tr *v1.TaskRun, now time.Time) {
		if tr.Status.CompletionTime != nil {
			completed[tr.Name] = tr.Status.CompletionTime.Time
		}
		if _, ok := seen[tr.Name]; !ok && tr.Annotations[annotation] == "true" {
			seen[tr.Name] = now
		}
	}
	list, err := client.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for i := range list.Items {
		note(&list.Items[i], time.Now())
	}
	rv := list.ResourceVersion
	for len(seen) < n {
		w, err := client.TektonV1().TaskRuns(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				log.Fatalf("%s: %d of %d signed before the timeout", label, len(seen), n)
			}
			time.Sleep(time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			tr, ok := ev.Object.(*v1.TaskRun)
			if !ok {
				continue
			}
			rv = tr.ResourceVersion
			note(tr, time.Now())
			if len(seen) >= n {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			log.Fatalf("%s: %d of %d signed before the timeout", label, len(seen), n)
		}
	}
	var lat []time.Duration
	var first, last time.Time
	for name, at := range seen {
		c, ok := completed[name]
		if !ok {
			continue
		}
		lat = append(lat, at.Sub(c))
		if first.IsZero() || c.Before(first) {
			first = c
		}
		if at.After(last) {
			last = at
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Millisecond) }
	span := last.Sub(first)
	fmt.Printf("%s: %d TaskRuns signed in %s: %.1f TaskRuns/s; completion->signed p50 %s p99 %s\n",
		label, len(lat), span.Round(time.Millisecond), float64(len(lat))/span.Seconds(), pct(0.5), pct(0.99))
	fmt.Printf("RESULT %s %.3f\n", label, float64(len(lat))/span.Seconds())
}
