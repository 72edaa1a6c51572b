package pipelinerun

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/internal/realnode"
)

// overheadTask: setup fills the workspace with @FILES@ files and prints
// the host's uptime (/proc/uptime, 10 ms resolution, the same clock in
// every container) as its last line; work prints it when it starts and
// when it ends; after prints it when it starts. @START@ and @STOP@ are the
// record pair around work, or nothing.
const overheadTask = `apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: @NAME@
spec:
  workspaces:
  - name: source
  steps:
  - name: setup
    image: @BUSYBOX@
    script: |
      cd $(workspaces.source.path)
      i=0; while [ $i -lt @FILES@ ]; do echo $i > f$i; i=$((i+1)); done
      echo T0 $(cut -d' ' -f1 /proc/uptime)
@START@  - name: work
    image: @BUSYBOX@
    script: |
      echo T1 $(cut -d' ' -f1 /proc/uptime)
      echo out > $(workspaces.source.path)/out
      echo T2 $(cut -d' ' -f1 /proc/uptime)
@STOP@  - name: after
    image: @BUSYBOX@
    script: echo T3 $(cut -d' ' -f1 /proc/uptime)
`

const overheadStart = `  - name: measure-materials
    ref: {name: stepseal-record-start}
    params:
    - {name: step, value: work}
    - {name: paths, value: ["source=$(workspaces.source.path)"]}
`

const overheadStop = `  - name: measure-products
    ref: {name: stepseal-record-stop}
    params:
    - {name: step, value: work}
    - {name: paths, value: ["source=$(workspaces.source.path)"]}
`

// TestRealNodeRecordOverhead measures what the record pair adds around one
// step in a real Pod: the same Task with and without stepseal-record-start
// and -stop around work, with a trivial workspace (one file) and with 1000
// files, five TaskRuns each, one after the other. Per run it takes the
// handovers around work from the steps' own uptime stamps (setup's last
// line to work's first, work's last to after's first — with the pair,
// each includes a recorder container's start, the recorder hashing the
// workspace and Tekton's entrypoint handover), and the TaskRun's wall time
// from its status (whole seconds); it logs the medians. It asserts
// nothing about time: the figures go to the README with the load they
// were measured under.
func TestRealNodeRecordOverhead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	const runs = 5
	for _, files := range []int{1, 1000} {
		medians := map[bool][2]float64{}
		for _, recorded := range []bool{false, true} {
			name := fmt.Sprintf("overhead-%d-%v", files, recorded)
			start, stop := "", ""
			if recorded {
				start, stop = overheadStart, overheadStop
			}
			doc := strings.NewReplacer("@NAME@", name, "@BUSYBOX@", e.busybox, "@FILES@", strconv.Itoa(files), "@START@", start, "@STOP@", stop).Replace(overheadTask)
			var task v1.Task
			if err := yaml.UnmarshalStrict([]byte(doc), &task); err != nil {
				t.Fatal(err)
			}
			task.Namespace = e.ns
			if _, err := e.n.Tekton.TektonV1().Tasks(e.ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var handover, wall []float64
			for i := range runs {
				tr := &v1.TaskRun{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Namespace: e.ns},
					Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: name},
						Workspaces: []v1.WorkspaceBinding{{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				}
				if _, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				done := realnode.WaitTaskRun(ctx, t, e.n.Tekton, e.ns, tr.Name)
				if !done.IsSuccessful() {
					t.Fatalf("TaskRun %s: %+v", tr.Name, done.Status.Conditions)
				}
				stamp := func(container, key string) float64 {
					t.Helper()
					for range 50 {
						log, err := e.n.Logs(ctx, e.ns, done.Status.PodName, container)
						if err == nil {
							for _, l := range strings.Split(string(log), "\n") {
								if v, ok := strings.CutPrefix(l, key+" "); ok {
									f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
									if err != nil {
										t.Fatalf("%s %s: %q", container, key, l)
									}
									return f
								}
							}
						}
						time.Sleep(100 * time.Millisecond)
					}
					t.Fatalf("no %s in the log of %s", key, container)
					return 0
				}
				h := (stamp("step-work", "T1") - stamp("step-setup", "T0")) + (stamp("step-after", "T3") - stamp("step-work", "T2"))
				handover = append(handover, h)
				wall = append(wall, done.Status.CompletionTime.Sub(done.Status.StartTime.Time).Seconds())
			}
			m := [2]float64{median(handover), median(wall)}
			medians[recorded] = m
			t.Logf("%d file(s), record pair %v: handovers around work %v s (median %.2f s); TaskRun wall %v s (median %.0f s)", files, recorded, handover, m[0], wall, m[1])
		}
		t.Logf("%d file(s): the record pair adds %.2f s per measured step (median handovers), %.0f s to the TaskRun (median wall, whole seconds)",
			files, medians[true][0]-medians[false][0], medians[true][1]-medians[false][1])
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
