package kubetest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stepseal/stepseal/controllers/annotations"
)

// ImageResults are the IMAGE_URL and IMAGE_DIGEST results of a TaskRun that
// pushed image number i of repository (a digest made of i+1), the type
// hints Tekton Chains reads.
func ImageResults(repository string, i int) []v1.TaskRunResult {
	return []v1.TaskRunResult{
		{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(repository)},
		{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(fmt.Sprintf("sha256:%064x", i+1))},
	}
}

// signedState is where obj is in the lifecycle: "true" once signed and
// released (no finalizer of stepseal's left), "failed" once given up, ""
// otherwise.
func signedState(obj metav1.Object) string {
	a := obj.GetAnnotations()
	switch a[annotations.Signed] {
	case annotations.SignedFailed:
		return annotations.SignedFailed
	case annotations.SignedTrue:
		for _, f := range obj.GetFinalizers() {
			if f == annotations.FinalizerTaskRun || f == annotations.FinalizerPipelineRun {
				return ""
			}
		}
		return annotations.SignedTrue
	}
	return ""
}

// WaitTaskRunSigned waits until the TaskRun ns/name is stepseal.dev/signed=true
// without the finalizer, and fails the test when it is signed=failed or ctx
// ends first.
func WaitTaskRunSigned(ctx context.Context, t testing.TB, tekton versioned.Interface, ns, name string) *v1.TaskRun {
	t.Helper()
	return waitSigned(ctx, t, "TaskRun "+name, func() (*v1.TaskRun, error) {
		return tekton.TektonV1().TaskRuns(ns).Get(ctx, name, metav1.GetOptions{})
	})
}

// WaitPipelineRunSigned is WaitTaskRunSigned for a PipelineRun.
func WaitPipelineRunSigned(ctx context.Context, t testing.TB, tekton versioned.Interface, ns, name string) *v1.PipelineRun {
	t.Helper()
	return waitSigned(ctx, t, "PipelineRun "+name, func() (*v1.PipelineRun, error) {
		return tekton.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
	})
}

func waitSigned[T metav1.Object](ctx context.Context, t testing.TB, what string, get func() (T, error)) T {
	t.Helper()
	for {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		switch signedState(got) {
		case annotations.SignedTrue:
			return got
		case annotations.SignedFailed:
			t.Fatalf("%s: signed=failed: %s", what, got.GetAnnotations()[annotations.Error])
		}
		if ctx.Err() != nil {
			t.Fatalf("%s not signed in time: annotations %v finalizers %v", what, got.GetAnnotations(), got.GetFinalizers())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitTaskRunsSigned waits until namespace ns holds n TaskRuns, every one
// signed=true without the finalizer (by listing, not through a watch), and
// fails the test on signed=failed or when ctx ends first.
func WaitTaskRunsSigned(ctx context.Context, t testing.TB, tekton versioned.Interface, ns string, n int) {
	t.Helper()
	for {
		list, err := tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
		done := 0
		if err == nil {
			for i := range list.Items {
				tr := &list.Items[i]
				switch signedState(tr) {
				case annotations.SignedTrue:
					done++
				case annotations.SignedFailed:
					t.Fatalf("%s: signed=failed: %s", tr.Name, tr.Annotations[annotations.Error])
				}
			}
			if done == n && len(list.Items) == n {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d TaskRuns in %s signed in time (last list error: %v)", done, n, ns, err)
		}
		// Lists of a thousand TaskRuns are not free on two cores.
		time.Sleep(min(500*time.Millisecond, time.Duration(100+n)*time.Millisecond))
	}
}

// SignedWatch watches a namespace's TaskRuns and records, per name, how
// often stepseal.dev/signed turned to "true" and when it first did. It
// survives short apiserver outages
// (RetryWatcher), not a restart.
type SignedWatch struct {
	mu     sync.Mutex
	signed map[string]bool
	count  map[string]int
	first  map[string]time.Time
}

// WatchSigned starts a SignedWatch of namespace ns for as long as ctx lives.
func WatchSigned(ctx context.Context, t testing.TB, tekton versioned.Interface, ns string) *SignedWatch {
	t.Helper()
	list, err := tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &SignedWatch{signed: map[string]bool{}, count: map[string]int{}, first: map[string]time.Time{}}
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return tekton.TektonV1().TaskRuns(ns).Watch(ctx, o)
	}}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer rw.Stop()
		for ev := range rw.ResultChan() {
			tr, ok := ev.Object.(*v1.TaskRun)
			if !ok {
				continue
			}
			now := tr.Annotations[annotations.Signed] == annotations.SignedTrue
			w.mu.Lock()
			if now && !w.signed[tr.Name] {
				w.count[tr.Name]++
				if _, seen := w.first[tr.Name]; !seen {
					w.first[tr.Name] = time.Now()
				}
			}
			w.signed[tr.Name] = now
			w.mu.Unlock()
		}
	}()
	return w
}

// SignedCount is how many TaskRuns are signed=true now.
func (w *SignedWatch) SignedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.signed {
		if v {
			n++
		}
	}
	return n
}

// FirstSigned waits until a TaskRun whose name starts with prefix is
// signed and returns when the first one was.
func (w *SignedWatch) FirstSigned(ctx context.Context, t testing.TB, prefix string) time.Time {
	t.Helper()
	for {
		w.mu.Lock()
		var first time.Time
		for name, at := range w.first {
			if strings.HasPrefix(name, prefix) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		w.mu.Unlock()
		if !first.IsZero() {
			return first
		}
		if ctx.Err() != nil {
			t.Fatalf("no TaskRun %s* signed", prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ExactlyOnce checks that the watch saw each of the namespace's n TaskRuns
// turn signed=true exactly once.
func (w *SignedWatch) ExactlyOnce(ctx context.Context, t testing.TB, tekton versioned.Interface, ns string, n int) {
	t.Helper()
	list, err := tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Errorf("%d TaskRuns, want %d", len(list.Items), n)
	}
	// The watch may lag the list a little.
	deadline := time.Now().Add(10 * time.Second)
	for w.SignedCount() < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var wrong []string
	for i := range list.Items {
		if c := w.count[list.Items[i].Name]; c != 1 {
			wrong = append(wrong, fmt.Sprintf("%s:%d", list.Items[i].Name, c))
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("TaskRuns not turned signed=true exactly once (name:times): %v", wrong)
	}
}

// SignedBetween lists the TaskRuns that first turned signed=true, as the
// watch saw it, at or after from and before to.
func (w *SignedWatch) SignedBetween(from, to time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, at := range w.first {
		if !at.Before(from) && at.Before(to) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
