package admission

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkDecide measures one Pod's decision for a signed image on the
// real Distribution registry over loopback: warm (the verdict cached, what
// every later Pod of a digest costs) and cold (a new Decider each time:
// manifest, signature and its verification, as on first sight of a
// digest).
func BenchmarkDecide(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	p := pod(signed.String())
	b.Run("warm", func(b *testing.B) {
		d := e.decider(nil)
		if dec := d.Decide(ctx, p, nil); !dec.Allowed {
			b.Fatal(dec.Err())
		}
		b.ResetTimer()
		for b.Loop() {
			if dec := d.Decide(ctx, p, nil); !dec.Allowed {
				b.Fatal(dec.Err())
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			d := e.decider(nil)
			b.StartTimer()
			if dec := d.Decide(ctx, p, nil); !dec.Allowed {
				b.Fatal(dec.Err())
			}
		}
	})
}

// BenchmarkCacheHeap reports the heap 10 000 cached verdicts hold (a cache
// sized 10 000, filled with distinct digests of one rule, as a cluster
// running 10 000 distinct images would): MiB in all and bytes per entry.
func BenchmarkCacheHeap(b *testing.B) {
	const entries = 10000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := NewCache(CacheOptions{Size: entries})
		ctx := context.Background()
		for i := range entries {
			k := cacheKey{
				digest: fmt.Sprintf("registry.example.com/team/app-%05d@sha256:%064x", i, i),
				rule:   "apps", trust: "root=3,snapshot=1042", platform: "eu", policy: "sha256:" + strings.Repeat("f", 64),
			}
			if _, err := c.do(ctx, k, func(context.Context) (verdict, error) { return verdict{}, nil }); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() != entries {
			b.Fatalf("%d entries", c.Len())
		}
		held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(held/(1<<20), "MiB")
		b.ReportMetric(held/entries, "B/entry")
		runtime.KeepAlive(c)
	}
}

// BenchmarkReview measures what the webhook's handler costs per review
// (CPU, allocations), without TLS: a warm validating review and a
// mutating one of a Pod as the apiserver sends it on CREATE (defaulted,
// with managedFields), whose image a pinned-digest rule admits.
func BenchmarkReview(b *testing.B) {
	img := "registry.example/apps/web@sha256:" + strings.Repeat("a", 64)
	pol, err := ParsePolicy([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- {name: pinned, images: [\"registry.example/apps/**\"], require: digest, digests: [\"sha256:" + strings.Repeat("a", 64) + "\"]}\n"))
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDecider(Config{Policy: pol})
	if err != nil {
		b.Fatal(err)
	}
	body := review(b, admissionv1.Create, "", apiserverPod(img), nil, false)
	b.Logf("review body: %d bytes", len(body))
	for _, h := range []*Handler{{d: d}, {d: d, mutate: true}} {
		name := "validate"
		if h.mutate {
			name = "mutate"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out := h.Review(context.Background(), body); !out.Response.Allowed {
					b.Fatal(out.Response.Result.Message)
				}
			}
		})
	}
}

// apiserverPod is a one-container Pod as kube-apiserver v1.35 hands it to
// a webhook on CREATE: defaults filled in, one managedFields entry.
func apiserverPod(img string) *corev1.Pod {
	grace, prio := int64(30), int32(0)
	never := corev1.PreemptLowerPriority
	links := true
	now := metav1.Now()
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "warm-c50-00042", Namespace: "bench-webhook", UID: "5b0e7d4c-7c1b-4a44-9d55-0f1e2d3c4b5a", CreationTimestamp: now,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "admissionload", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
				FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)}}},
		Spec: corev1.PodSpec{
			Containers:    []corev1.Container{{Name: "app", Image: img, ImagePullPolicy: corev1.PullIfNotPresent, TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile}},
			RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: &grace, DNSPolicy: corev1.DNSClusterFirst,
			SecurityContext: &corev1.PodSecurityContext{}, SchedulerName: "default-scheduler", Priority: &prio, EnableServiceLinks: &links, PreemptionPolicy: &never,
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &grace}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort},
	}
}
