package tekton

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// files writes name → content into a fresh directory and returns it.
func files(t *testing.T, fs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range fs {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const task = `apiVersion: tekton.dev/v1
kind: Task
metadata: {name: greet}
spec:
  params: [{name: who, default: world}]
  workspaces: [{name: out}]
  steps:
  - {name: say, image: busybox, script: 'echo $(params.who) > $(workspaces.out.path)/x'}
`

const pipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: greeting}
spec:
  params: [{name: who, default: nobody}]
  workspaces: [{name: ws}]
  tasks:
  - name: hello
    taskRef: {name: greet}
    params: [{name: who, value: $(params.who)}]
    workspaces: [{name: out, workspace: ws}]
`

const pipelineRunRef = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: greeting-run}
spec:
  pipelineRef: {name: greeting}
  params: [{name: who, value: tekton}]
  workspaces: [{name: ws, emptyDir: {}}]
  timeouts: {pipeline: 1h30m, tasks: 1h}
`

func load(t *testing.T, dir, file, tasks string) *Spec {
	t.Helper()
	if tasks != "" {
		tasks = filepath.Join(dir, tasks)
	}
	s, err := Load(t.Context(), filepath.Join(dir, file), tasks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPipelineRunWithPipelineRefInSameFile(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": task + "---\n" + pipeline + "---\n" + pipelineRunRef})
	s := load(t, dir, "run.yaml", "")
	if s.Pipeline.Name != "greeting" || s.TaskRefs["hello"] != "greet" || s.Run == nil || s.Run.Kind != "PipelineRun" || s.Run.Name != "greeting-run" {
		t.Fatalf("spec = %+v, run %+v", s, s.Run)
	}
	if len(s.Run.Params) != 1 || s.Run.Params[0].Value.StringVal != "tekton" {
		t.Errorf("params = %+v", s.Run.Params)
	}
	if b, ok := s.Run.Binding("ws"); !ok || b.EmptyDir == nil {
		t.Errorf("binding of ws = %+v", b)
	}
	if s.Run.Timeouts.Pipeline.Duration != 90*time.Minute || s.Run.Timeouts.Tasks.Duration != time.Hour {
		t.Errorf("timeouts = %+v", s.Run.Timeouts)
	}
	if !reflect.DeepEqual(s.Files, []string{filepath.Join(dir, "run.yaml")}) {
		t.Errorf("files = %v", s.Files)
	}
	if len(s.Notes) != 0 {
		t.Errorf("notes = %q", s.Notes)
	}
}

// pipelineRef and taskRef resolve in the same directory and in --tasks DIR;
// the files used are the run's definition, unrelated files beside it are
// skipped.
func TestPipelineRunRefsBesideAndInTasksDir(t *testing.T) {
	dir := files(t, map[string]string{
		"run.yaml":           pipelineRunRef,
		"pipeline.yaml":      pipeline,
		"tasks/greet.yaml":   task,
		"functionaries.yaml": "apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nspec: {}\n",
		"notes.yaml":         "just: [text",
	})
	s := load(t, dir, "run.yaml", "tasks")
	want := []string{filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "run.yaml"), filepath.Join(dir, "tasks", "greet.yaml")}
	if !reflect.DeepEqual(s.Files, want) {
		t.Errorf("files = %v, want %v", s.Files, want)
	}
	// And the Task beside the run as well.
	dir = files(t, map[string]string{"run.yaml": pipelineRunRef, "pipeline.yaml": pipeline, "task.yaml": task})
	if s := load(t, dir, "run.yaml", ""); s.TaskRefs["hello"] != "greet" {
		t.Errorf("task refs = %v", s.TaskRefs)
	}
}

func TestPipelineRunInlineSpec(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {generateName: inline-}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps: [{name: s, image: busybox, script: 'true'}]
`})
	s := load(t, dir, "run.yaml", "")
	if s.Pipeline.Name != "inline" || s.Run.Name != "inline" || len(s.Tasks["t"].Steps) != 1 {
		t.Fatalf("pipeline %q, run %+v", s.Pipeline.Name, s.Run)
	}
}

// A TaskRun is a one-task pipeline named after it; the Pipeline declares the
// Task's params and passes them on; optional workspaces it leaves unbound
// are left out.
func TestTaskRun(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: build}
spec:
  timeout: 90s
  retries: 2
  params: [{name: flags, value: [-v, -race]}]
  workspaces: [{name: src, emptyDir: {}}]
  taskSpec:
    params: [{name: flags, type: array}, {name: mode, default: fast}]
    workspaces: [{name: src}, {name: cache, optional: true}]
    steps: [{name: compile, image: golang, command: [go, build], args: ["$(params.flags[*])"]}]
`})
	s := load(t, dir, "run.yaml", "")
	p := s.Pipeline
	if p.Name != "build" || len(p.Spec.Tasks) != 1 || s.Run.Kind != "TaskRun" {
		t.Fatalf("pipeline = %+v", p)
	}
	pt := p.Spec.Tasks[0]
	if pt.Name != "build" || pt.Timeout.Duration != 90*time.Second || pt.Retries != 2 {
		t.Errorf("pipeline task = %+v", pt)
	}
	if len(p.Spec.Params) != 2 || pt.Params[0].Value.StringVal != "$(params.flags[*])" || pt.Params[1].Value.StringVal != "$(params.mode)" {
		t.Errorf("params: pipeline %+v, task %+v", p.Spec.Params, pt.Params)
	}
	if len(p.Spec.Workspaces) != 1 || p.Spec.Workspaces[0].Name != "src" {
		t.Errorf("workspaces = %+v", p.Spec.Workspaces)
	}
}

func TestTaskRunTaskRef(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": task + "---\n" + `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: hi}
spec:
  taskRef: {name: greet}
  workspaces: [{name: out, emptyDir: {}}]
`})
	s := load(t, dir, "run.yaml", "")
	if s.TaskRefs["hi"] != "greet" || len(s.Tasks["hi"].Steps) != 1 {
		t.Fatalf("task refs %v", s.TaskRefs)
	}
}

const cmRun = `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a.txt: alpha, b.txt: beta}
binaryData: {c.bin: AAE=}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {token: czNjcjN0}
stringData: {user: robot}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: cache}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: sources}
spec:
  workspaces:
  - {name: all, configMap: {name: cfg}}
  - {name: some, configMap: {name: cfg, defaultMode: 0755, items: [{key: b.txt, path: deep/B}, {key: a.txt, path: A, mode: 0600}]}}
  - {name: secret, secret: {secretName: creds}}
  - {name: claim, persistentVolumeClaim: {claimName: cache}, subPath: go}
  - {name: tmpl, volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}
  pipelineSpec:
    workspaces: [{name: all}, {name: some}, {name: secret}, {name: claim}, {name: tmpl}]
    tasks:
    - name: t
      workspaces: [{name: all, workspace: all}, {name: some, workspace: some}, {name: secret, workspace: secret}, {name: claim, workspace: claim}, {name: tmpl, workspace: tmpl}]
      taskSpec:
        workspaces: [{name: all}, {name: some}, {name: secret}, {name: claim}, {name: tmpl}]
        steps: [{name: s, image: busybox, script: 'true'}]
`

func TestWorkspaceSources(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": cmRun})
	s := load(t, dir, "run.yaml", "")
	got := map[string][]File{}
	for w, fs := range s.Run.Sources {
		got[w] = fs
	}
	want := map[string][]File{
		"all":    {{"a.txt", []byte("alpha"), 0o444}, {"b.txt", []byte("beta"), 0o444}, {"c.bin", []byte{0, 1}, 0o444}},
		"some":   {{"A", []byte("alpha"), 0o400}, {"deep/B", []byte("beta"), 0o555}},
		"secret": {{"token", []byte("s3cr3t"), 0o444}, {"user", []byte("robot"), 0o444}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources = %v\nwant %v", got, want)
	}
	for w, dir := range map[string]string{"all": "workspaces/all", "claim": "claims/cache/go", "tmpl": "workspaces/tmpl"} {
		if d := s.WorkspaceDir(w); d != dir {
			t.Errorf("WorkspaceDir(%s) = %s, want %s", w, d, dir)
		}
	}
	for _, b := range s.Workspaces(s.Pipeline.Spec.Tasks[0]) {
		if ro := b.PipelineWorkspace == "all" || b.PipelineWorkspace == "some" || b.PipelineWorkspace == "secret"; b.ReadOnly != ro {
			t.Errorf("%s: read-only %v, want %v", b.PipelineWorkspace, b.ReadOnly, ro)
		}
	}
}

// A projected workspace of ConfigMap and Secret sources is their files side
// by side, as separate configMap and secret workspaces would have them
// (items, item modes, the projected defaultMode, optional sources), read-only
// like them, the binding's subPath applied.
func TestWorkspaceProjected(t *testing.T) {
	run := strings.Replace(cmRun, "  - {name: all, configMap: {name: cfg}}\n",
		"  - {name: all, projected: {defaultMode: 0640, sources: [{configMap: {name: cfg, items: [{key: a.txt, path: conf/a.txt}, {key: c.bin, path: c.bin, mode: 0500}]}}, {secret: {name: creds}}, {configMap: {name: absent, optional: true}}]}}\n", 1)
	dir := files(t, map[string]string{"run.yaml": run})
	s := load(t, dir, "run.yaml", "")
	want := []File{{"c.bin", []byte{0, 1}, 0o500}, {"conf/a.txt", []byte("alpha"), 0o440}, {"token", []byte("s3cr3t"), 0o440}, {"user", []byte("robot"), 0o440}}
	if got := s.Run.Sources["all"]; !reflect.DeepEqual(got, want) {
		t.Errorf("projected sources = %v\nwant %v", got, want)
	}
	if !s.Run.ReadOnly("all") || s.WorkspaceDir("all") != "workspaces/all" {
		t.Errorf("projected workspace: read-only %v, dir %s", s.Run.ReadOnly("all"), s.WorkspaceDir("all"))
	}
	sub := strings.Replace(run, "{name: all, projected:", "{name: all, subPath: conf, projected:", 1)
	s = load(t, files(t, map[string]string{"run.yaml": sub}), "run.yaml", "")
	if fs := s.Run.Sources["all"]; len(fs) != 1 || fs[0].Path != "a.txt" || s.WorkspaceDir("all") != "workspaces/all" {
		t.Errorf("projected with subPath conf: %v in %s", fs, s.WorkspaceDir("all"))
	}
}

// A run's subPath into a ConfigMap mounts only what lies under it.
func TestWorkspaceSourceSubPath(t *testing.T) {
	run := strings.Replace(cmRun, "{name: some, configMap:", "{name: some, subPath: deep, configMap:", 1)
	dir := files(t, map[string]string{"run.yaml": run})
	s := load(t, dir, "run.yaml", "")
	if fs := s.Run.Sources["some"]; len(fs) != 1 || fs[0].Path != "B" {
		t.Errorf("sources of some = %v", fs)
	}
}

func TestIgnoredObjectsOneNote(t *testing.T) {
	dir := files(t, map[string]string{"run.yaml": `apiVersion: v1
kind: ServiceAccount
metadata: {name: bot}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-edit}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
---
apiVersion: v1
kind: Namespace
metadata: {name: ci}
---
` + pipeline + "---\n" + task})
	s := load(t, dir, "run.yaml", "")
	if len(s.Notes) != 1 || !strings.Contains(s.Notes[0], "3 object(s)") || !strings.Contains(s.Notes[0], "ServiceAccount/bot, RoleBinding/bot-edit, Namespace/ci") {
		t.Errorf("notes = %q", s.Notes)
	}
	if s.Run != nil {
		t.Error("a Pipeline file has no run")
	}
}

// Each refusal names the object and the file.
func TestRunRefusals(t *testing.T) {
	const inline = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    workspaces: [{name: w}]
    tasks:
    - name: t
      workspaces: [{name: w, workspace: w}]
      taskSpec:
        workspaces: [{name: w}]
        steps: [{name: s, image: busybox, script: 'true'}]
`
	tr := "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: tr}\nspec:\n  taskSpec: {steps: [{name: s, image: busybox, script: 'true'}]}\n"
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"two runs", inline + "---\n" + tr, []string{"2 runs in one file", "PipelineRun r, TaskRun tr"}},
		{"pipelineRef missing", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec: {pipelineRef: {name: gone}}\n", []string{`PipelineRun "r"`, `Pipeline "gone"`}},
		{"resolver", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec: {pipelineRef: {resolver: git}}\n", []string{`PipelineRun "r"`, "resolvers"}},
		{"taskRef missing", "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: tr}\nspec: {taskRef: {name: gone}}\n", []string{`TaskRun "tr"`, `Task "gone"`}},
		{"unknown field", strings.Replace(inline, "pipelineSpec:", "pipelineSpek:", 1), []string{"PipelineRun r", "pipelineSpek"}},
		{"tekton validation", strings.Replace(inline, "name: t\n", "name: T_bad\n", 1), []string{`PipelineRun "r"`, "T_bad"}},
		{"v1beta1", strings.Replace(inline, "tekton.dev/v1", "tekton.dev/v1beta1", 1), []string{"PipelineRun r", `"tekton.dev/v1beta1"`}},
		{"StepAction v1", "apiVersion: tekton.dev/v1\nkind: StepAction\nmetadata: {name: sa}\n---\n" + inline, []string{"StepAction sa", "tekton.dev/v1beta1 and tekton.dev/v1alpha1"}},
		{"StepAction invalid", "apiVersion: tekton.dev/v1beta1\nkind: StepAction\nmetadata: {name: sa}\nspec: {image: busybox, command: [sh], script: x}\n---\n" + inline, []string{`StepAction "sa"`, "script"}},
		{"StepAction unknown field", "apiVersion: tekton.dev/v1alpha1\nkind: StepAction\nmetadata: {name: sa}\nspec: {image: busybox, scrip: x}\n---\n" + inline, []string{"StepAction sa", "scrip"}},
		{"StepAction missing", strings.Replace(inline, "steps: [{name: s, image: busybox, script: 'true'}]", "steps: [{name: s, ref: {name: gone}}]", 1), []string{`PipelineRun "r"`, `pipeline task "t" step "s"`, `StepAction "gone"`}},
		{"StepAction resolver", strings.Replace(inline, "steps: [{name: s, image: busybox, script: 'true'}]", "steps: [{name: s, ref: {resolver: git, params: [{name: url, value: x}]}}]", 1), []string{`PipelineRun "r"`, `pipeline task "t" step "s"`, `resolver "git"`, "remote resolution"}},
		{"unknown group", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n" + inline, []string{"Widget w", "example.com/v1"}},
		{"core kind, wrong version", "apiVersion: v2\nkind: ConfigMap\nmetadata: {name: c}\n---\n" + inline, []string{"ConfigMap c", `"v2"`}},
		{"ConfigMap unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata2: {}\n---\n" + inline, []string{"ConfigMap c", "data2"}},
		{"ConfigMap missing", inline + "  workspaces: [{name: w, configMap: {name: absent}}]\n", []string{`PipelineRun "r"`, `ConfigMap "absent"`, "not found"}},
		{"ConfigMap key missing", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\n" + inline + "  workspaces: [{name: w, configMap: {name: c, items: [{key: z, path: z}]}}]\n", []string{`PipelineRun "r"`, `ConfigMap "c"`, `no key "z"`}},
		{"Secret missing", inline + "  workspaces: [{name: w, secret: {secretName: absent}}]\n", []string{`PipelineRun "r"`, `Secret "absent"`}},
		{"key escapes", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {../x: b}\n---\n" + inline + "  workspaces: [{name: w, configMap: {name: c}}]\n", []string{`ConfigMap "c"`, `key "../x"`}},
		{"secret key escapes", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {..: b}\n---\n" + inline + "  workspaces: [{name: w, secret: {secretName: s}}]\n", []string{`Secret "s"`, `key ".."`}},
		{"item path escapes", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\n" + inline + "  workspaces: [{name: w, configMap: {name: c, items: [{key: a, path: ../x}]}}]\n", []string{`ConfigMap "c"`, "../x"}},
		{"subPath escapes", inline + "  workspaces: [{name: w, emptyDir: {}, subPath: ../up}]\n", []string{`PipelineRun "r"`, "../up"}},
		{"taskRunSpecs unknown task", inline + "  taskRunSpecs: [{pipelineTaskName: nope, serviceAccountName: x}]\n", []string{`PipelineRun "r"`, "taskRunSpecs[0]", `no task "nope"`}},
		{"podTemplate securityContext", inline + "  taskRunTemplate: {podTemplate: {securityContext: {runAsUser: 1000}}}\n", []string{`PipelineRun "r"`, "taskRunTemplate.podTemplate", "securityContext"}},
		{"taskRunSpecs podTemplate volumes", inline + "  taskRunSpecs: [{pipelineTaskName: t, podTemplate: {volumes: [{name: v, emptyDir: {}}]}}]\n", []string{`PipelineRun "r"`, "taskRunSpecs[0] (pipeline task t).podTemplate", "volumes"}},
		{"podTemplate env valueFrom", inline + "  taskRunTemplate: {podTemplate: {env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}}\n", []string{`PipelineRun "r"`, "env A", "valueFrom"}},
		{"TaskRun podTemplate hostAliases", strings.Replace(tr, "spec:\n", "spec:\n  podTemplate: {hostAliases: [{ip: 10.0.0.1, hostnames: [a]}]}\n", 1), []string{`TaskRun "tr"`, "spec.podTemplate", "hostAliases"}},
		{"projected ConfigMap missing", inline + "  workspaces: [{name: w, projected: {sources: [{configMap: {name: c}}]}}]\n", []string{`PipelineRun "r"`, `workspace "w"`, `projected ConfigMap "c" not found`}},
		{"projected downwardAPI", inline + "  workspaces: [{name: w, projected: {sources: [{downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}]}}]\n", []string{`PipelineRun "r"`, `workspace "w"`, "downwardAPI is not supported"}},
		{"projected serviceAccountToken", inline + "  workspaces: [{name: w, projected: {sources: [{serviceAccountToken: {path: token}}]}}]\n", []string{`PipelineRun "r"`, `workspace "w"`, "serviceAccountToken is not supported"}},
		{"projected clusterTrustBundle", inline + "  workspaces: [{name: w, projected: {sources: [{clusterTrustBundle: {name: b, path: ca.pem}}]}}]\n", []string{`PipelineRun "r"`, `workspace "w"`, "clusterTrustBundle is not supported"}},
		{"projected duplicate path", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n---\n" + inline + "  workspaces: [{name: w, projected: {sources: [{configMap: {name: c}}, {secret: {name: s}}]}}]\n", []string{`workspace "w"`, `ConfigMap "c" and Secret "s" both give the file "a"`}},
		{"csi", inline + "  workspaces: [{name: w, csi: {driver: secrets-store.csi.k8s.io}}]\n", []string{`PipelineRun "r"`, `workspace "w"`, "csi", "secrets-store.csi.k8s.io", "not supported"}},
		{"TaskRun csi", strings.Replace(tr, "spec:\n", "spec:\n  workspaces: [{name: w, csi: {driver: d}}]\n", 1), []string{`TaskRun "tr"`, `workspace "w"`, "csi"}},
		{"pipeline task resolver", strings.Replace(inline, "      taskSpec:\n        workspaces: [{name: w}]\n        steps: [{name: s, image: busybox, script: 'true'}]\n", "      taskRef: {resolver: git, params: [{name: url, value: https://example.com/t.git}]}\n", 1), []string{`PipelineRun "r"`, `pipeline task "t"`, "no resolvers"}},
		{"pipelineRef bundle resolver", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec: {pipelineRef: {resolver: bundles, params: [{name: bundle, value: example.com/p:1}]}}\n", []string{`PipelineRun "r"`, "pipelineRef", "no bundles"}},
		{"TaskRun resolver", "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: tr}\nspec: {taskRef: {resolver: hub, params: [{name: name, value: git-clone}]}}\n", []string{`TaskRun "tr"`, "taskRef", "no resolvers"}},
		{"TaskRun debug", strings.Replace(tr, "spec:\n", "spec:\n  debug: {breakpoints: {onFailure: enabled}}\n", 1), []string{`TaskRun "tr"`, "debug"}},
		{"TaskRun cancelled", strings.Replace(tr, "spec:\n", "spec:\n  status: TaskRunCancelled\n", 1), []string{`TaskRun "tr"`, "TaskRunCancelled"}},
		{"pending", inline + "  status: PipelineRunPending\n", []string{`PipelineRun "r"`, "PipelineRunPending"}},
		{"TaskRun name not a task name", strings.Replace(tr, "name: tr}", "name: tr.v1}", 1), []string{"tr.v1", "named after it"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := files(t, map[string]string{"run.yaml": c.doc})
			_, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), "")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range append(c.want, "run.yaml") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// What a run file says is data for the runner, not a special case: a
// Pipeline file has none of it.
func TestPipelineFileHasNoRun(t *testing.T) {
	dir := files(t, map[string]string{"pipeline.yaml": pipeline, "tasks/t.yaml": task})
	s := load(t, dir, "pipeline.yaml", "tasks")
	if s.Run != nil || s.WorkspaceDir("ws") != "workspaces/ws" {
		t.Fatalf("run %+v, dir %s", s.Run, s.WorkspaceDir("ws"))
	}
	var _ v1.PipelineTask = s.Pipeline.Spec.Tasks[0]
}

// An optional ConfigMap that is absent is an empty workspace, as Kubernetes
// mounts it.
func TestOptionalConfigMapAbsent(t *testing.T) {
	run := strings.Replace(cmRun, "{name: all, configMap: {name: cfg}}", "{name: all, configMap: {name: nowhere, optional: true}}", 1)
	dir := files(t, map[string]string{"run.yaml": run})
	s := load(t, dir, "run.yaml", "")
	if fs, ok := s.Run.Sources["all"]; !ok || len(fs) != 0 {
		t.Errorf("sources of all = %v, %v", fs, ok)
	}
}

// A PipelineRun's finally tasks are resolved like its other tasks (a
// taskRef among them), kept out of Order and Deps, and timeouts.finally is
// the run's; Tekton's own validation still rejects what finally may not do.
func TestFinally(t *testing.T) {
	const run = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: with-finally}
spec:
  timeouts: {pipeline: 1h, tasks: 50m, finally: 10m}
  workspaces: [{name: ws, emptyDir: {}}]
  pipelineSpec:
    workspaces: [{name: ws}]
    tasks:
    - name: build
      taskSpec:
        results: [{name: v}]
        steps: [{name: s, image: busybox, script: 'true'}]
    finally:
    - name: notify
      taskRef: {name: greet}
      params: [{name: who, value: $(tasks.build.status)}]
      workspaces: [{name: out, workspace: ws}]
`
	dir := files(t, map[string]string{"run.yaml": run, "task.yaml": task})
	s, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Finally(); len(f) != 1 || f[0].Name != "notify" || s.TaskRefs["notify"] != "greet" || s.Tasks["notify"] == nil {
		t.Fatalf("finally = %+v, refs %v", f, s.TaskRefs)
	}
	order, err := s.Order()
	if err != nil || len(order) != 1 || order[0].Name != "build" {
		t.Errorf("Order = %v, %v: want the DAG only", order, err)
	}
	if w := s.Workspaces(s.Finally()[0]); len(w) != 1 || w[0].PipelineWorkspace != "ws" {
		t.Errorf("finally task's workspaces = %+v", w)
	}
	if d := s.Run.Timeouts.Finally; d == nil || d.Duration != 10*time.Minute {
		t.Errorf("timeouts.finally = %v", d)
	}

	// A DAG task may not use a finally task's result: Tekton's Validate.
	bad := strings.Replace(run, "        steps: [{name: s, image: busybox, script: 'true'}]\n    finally:",
		"        steps: [{name: s, image: busybox, script: 'true'}]\n    - name: after\n      params: [{name: x, value: $(tasks.notify.results.v)}]\n      taskSpec:\n        params: [{name: x}]\n        steps: [{name: s, image: busybox, script: 'true'}]\n    finally:", 1)
	dir = files(t, map[string]string{"run.yaml": bad, "task.yaml": task})
	if _, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "with-finally") {
		t.Errorf("a DAG task using a finally task's result: %v", err)
	}
}
