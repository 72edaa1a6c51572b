package tekton

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// TaskRunSpec is what the run says about the TaskRun of pipelineTask:
// Tekton's own PipelineRun.GetTaskRunSpec over the run's taskRunTemplate
// and taskRunSpecs (the template's podTemplate merged with the task's, the
// task's serviceAccountName, timeout, stepSpecs, ...). The zero value when
// r is nil. A TaskRun's podTemplate is its one task's template.
func (r *Run) TaskRunSpec(pipelineTask string) v1.PipelineTaskRunSpec {
	if r == nil {
		return v1.PipelineTaskRunSpec{PipelineTaskName: pipelineTask}
	}
	pr := &v1.PipelineRun{Spec: v1.PipelineRunSpec{TaskRunTemplate: r.TaskRunTemplate, TaskRunSpecs: r.TaskRunSpecs}}
	return pr.GetTaskRunSpec(pipelineTask)
}

// taskRunSpecs checks what a run's taskRunTemplate and taskRunSpecs (a
// TaskRun's podTemplate, stepSpecs, ...) ask of the local runner: the
// podTemplate's env is applied to every step, as Tekton's Pod builder
// appends it; a taskRunSpec's timeout is its task's; what only matters to
// a cluster (scheduling, compute resources, service accounts, metadata,
// image pull secrets) is ignored with one line each; what would change how
// a step runs and cannot be done here (a Pod security context, volumes,
// DNS, a runtime class, host users) is refused, naming the field and the
// task. what names the run ("PipelineRun r"); tasks are the Pipeline's
// task names, which a taskRunSpec must name.
func taskRunSpecs(what string, run *Run, tasks map[string]*v1.TaskSpec, fail func(string, ...any) error) ([]string, error) {
	var notes []string
	note := func(where string, fields []string, why string) {
		if len(fields) > 0 {
			notes = append(notes, fmt.Sprintf("stepseal: %s: %s: %s ignored: %s", what, where, strings.Join(fields, ", "), why))
		}
	}
	check := func(where string, t *pod.PodTemplate) error {
		if t == nil {
			return nil
		}
		var refused []string
		if t.SecurityContext != nil {
			refused = append(refused, "securityContext")
		}
		if len(t.Volumes) > 0 {
			refused = append(refused, "volumes")
		}
		if t.RuntimeClassName != nil {
			refused = append(refused, "runtimeClassName")
		}
		if t.DNSPolicy != nil || t.DNSConfig != nil || len(t.HostAliases) > 0 {
			refused = append(refused, "dnsPolicy/dnsConfig/hostAliases")
		}
		if t.HostUsers != nil {
			refused = append(refused, "hostUsers")
		}
		if len(refused) > 0 {
			return fail("%s.podTemplate: %s would change how the steps run, which the local runner cannot do on this host", where, strings.Join(refused, ", "))
		}
		for _, e := range t.Env {
			if e.ValueFrom != nil {
				return fail("%s.podTemplate: env %s uses valueFrom, which the local runner cannot resolve", where, e.Name)
			}
		}
		var sched []string
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"nodeSelector", len(t.NodeSelector) > 0}, {"tolerations", len(t.Tolerations) > 0}, {"affinity", t.Affinity != nil},
			{"priorityClassName", t.PriorityClassName != nil}, {"schedulerName", t.SchedulerName != ""},
			{"topologySpreadConstraints", len(t.TopologySpreadConstraints) > 0},
		} {
			if f.set {
				sched = append(sched, "podTemplate."+f.name)
			}
		}
		note(where, sched, "there is no Pod to schedule, steps run on this host")
		var other []string
		if len(t.ImagePullSecrets) > 0 {
			other = append(other, "podTemplate.imagePullSecrets")
		}
		if t.AutomountServiceAccountToken != nil {
			other = append(other, "podTemplate.automountServiceAccountToken")
		}
		if t.EnableServiceLinks != nil {
			other = append(other, "podTemplate.enableServiceLinks")
		}
		if t.HostNetwork {
			other = append(other, "podTemplate.hostNetwork")
		}
		note(where, other, "images are not pulled and steps run as this host's processes, in its network, without a service account")
		return nil
	}
	tmpl := "taskRunTemplate"
	if run.Kind == "TaskRun" {
		tmpl = "spec"
	}
	if err := check(tmpl, run.TaskRunTemplate.PodTemplate); err != nil {
		return nil, err
	}
	if sa := run.TaskRunTemplate.ServiceAccountName; sa != "" {
		note(tmpl, []string{"serviceAccountName " + sa}, "steps run as this host's user")
	}
	seen := map[string]bool{}
	for i, s := range run.TaskRunSpecs {
		where := fmt.Sprintf("taskRunSpecs[%d] (pipeline task %s)", i, s.PipelineTaskName)
		if run.Kind == "TaskRun" {
			where = "spec"
		}
		if _, ok := tasks[s.PipelineTaskName]; !ok {
			names := make([]string, 0, len(tasks))
			for n := range tasks {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fail("%s: the Pipeline has no task %q (tasks: %s)", where, s.PipelineTaskName, strings.Join(names, ", "))
		}
		if seen[s.PipelineTaskName] {
			return nil, fail("%s: pipeline task %s has more than one taskRunSpec", where, s.PipelineTaskName)
		}
		seen[s.PipelineTaskName] = true
		if err := check(where, s.PodTemplate); err != nil {
			return nil, err
		}
		var res []string
		if len(s.StepSpecs) > 0 {
			res = append(res, "stepSpecs")
		}
		if len(s.SidecarSpecs) > 0 {
			res = append(res, "sidecarSpecs")
		}
		if s.ComputeResources != nil {
			res = append(res, "computeResources")
		}
		note(where, res, "compute resources are not enforced on this host")
		if s.ServiceAccountName != "" {
			note(where, []string{"serviceAccountName " + s.ServiceAccountName}, "steps run as this host's user")
		}
		if s.Metadata != nil && (len(s.Metadata.Labels) > 0 || len(s.Metadata.Annotations) > 0) {
			note(where, []string{"metadata"}, "there is no TaskRun object to label")
		}
	}
	return notes, nil
}
