package taskrun

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/run"
)

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func loadTaskRun(t *testing.T, file string) *v1.TaskRun {
	t.Helper()
	return controllertest.LoadTaskRun(t, filepath.Join("testdata", file))
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func terminated(code int32, start, end string) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode:   code,
		StartedAt:  metav1.NewTime(ts(start)),
		FinishedAt: metav1.NewTime(ts(end)),
	}
}

// withTerminated gives every step a terminated state, as a real status has.
func withTerminated(tr *v1.TaskRun) *v1.TaskRun {
	for i := range tr.Status.Steps {
		tr.Status.Steps[i].Terminated = terminated(0, "2021-03-29T09:50:00Z", "2021-03-29T09:50:05Z")
	}
	return tr
}

const (
	kanikoDigest = "sha256:c3109d5926a997b100c4343944e06c6b30a6804b2f9abe0994d3de6ef92b028e"
	appDigest    = controllertest.AppDigest
	digestA      = controllertest.DigestA
)

// minimal is a finished lone TaskRun with one terminated step.
func minimal(mut func(*v1.TaskRun)) *v1.TaskRun { return controllertest.Minimal(mut) }

func TestFromTaskRunBuildPush(t *testing.T) {
	got, err := FromTaskRun(loadTaskRun(t, "build-push.json"))
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/usr/bin/env bash\nset -e\necho -n registry.example.com/team-a/app:1.4.0 | tee $(results.IMAGE_URL.path)\n"
	params := map[string]string{"IMAGE": "registry.example.com/team-a/app", "EXTRA_ARGS": `["--cache=true","--snapshot-mode=redo"]`}
	pkgURI := "pkg:oci/app?repository_url=registry.example.com/team-a"
	want := &run.Record{
		Pipeline:   "release",
		RunID:      "5d0b7a11-93c4-4f0e-8a0e-6a2b4e8f2c77",
		Namespace:  "team-a",
		Source:     Source,
		Params:     params,
		StartedAt:  ts("2026-11-20T10:02:02Z"),
		FinishedAt: ts("2026-11-20T10:04:31Z"),
		Tasks: []run.Task{{
			PipelineTask:   "build",
			TaskRef:        "kaniko-build",
			TaskRun:        "release-7xk2p-build",
			ServiceAccount: "builder",
			Params:         params,
			Results: map[string]string{
				"IMAGE_DIGEST": "sha256:" + appDigest,
				"IMAGE_URL":    "registry.example.com/team-a/app:1.4.0\n",
			},
			Steps: []run.Step{{
				Name:        "build.prepare",
				Image:       "docker.io/library/busybox:1.36",
				ImageDigest: "sha256:768e5c6f5cb6db0794eec98dc7a967f40631746c32232b78a3105fb946f3ab83",
				Command:     []string{"sh", "-c"},
				Args:        []string{"mkdir -p /workspace/out"},
				Materials:   run.Artifacts{"git+https://github.com/team-a/app.git": {"sha1": "4f0e3c5a2b1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f"}},
				Products:    run.Artifacts{},
				StartedAt:   ts("2026-11-20T10:02:10Z"),
				FinishedAt:  ts("2026-11-20T10:02:11Z"),
			}, {
				Name:        "build.build-and-push",
				Image:       "gcr.io/kaniko-project/executor:v1.23.2",
				ImageDigest: kanikoDigest,
				Args:        []string{"--dockerfile=Dockerfile", "--destination=registry.example.com/team-a/app:1.4.0", "--digest-file=$(results.IMAGE_DIGEST.path)"},
				WorkingDir:  "/workspace/source",
				Materials:   run.Artifacts{},
				Products: run.Artifacts{
					pkgURI:                                   {"sha256": appDigest},
					"steps/build-and-push/results/cache-key": {"sha256": sha("v1-linux-amd64")},
				},
				Results:    map[string]string{"cache-key": "v1-linux-amd64"},
				StartedAt:  ts("2026-11-20T10:02:11Z"),
				FinishedAt: ts("2026-11-20T10:04:20Z"),
			}, {
				Name:         "build.write-url",
				Image:        "docker.io/library/bash:5.2",
				ImageDigest:  "sha256:9e7f0c21c44a3f0a2b6d6d14d1c7dfe1e7a0c0f2d1f1e9a2f8b3c0e5d8a7b6c4",
				Script:       script,
				ScriptDigest: sha(script),
				Materials:    run.Artifacts{},
				Products: run.Artifacts{
					"results/IMAGE_DIGEST":            {"sha256": sha("sha256:" + appDigest)},
					"results/IMAGE_URL":               {"sha256": sha("registry.example.com/team-a/app:1.4.0\n")},
					"registry.example.com/team-a/app": {"sha256": appDigest},
				},
				StartedAt:  ts("2026-11-20T10:04:20Z"),
				FinishedAt: ts("2026-11-20T10:04:21Z"),
			}},
		}},
	}
	if d := cmp.Diff(want, got.Record); d != "" {
		t.Errorf("record (-want +got):\n%s", d)
	}
	wantSubjects := run.Artifacts{
		pkgURI:                            {"sha256": appDigest},
		"registry.example.com/team-a/app": {"sha256": appDigest},
	}
	if d := cmp.Diff(wantSubjects, got.Subjects); d != "" {
		t.Errorf("subjects (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"registry.example.com/team-a/app@sha256:" + appDigest}, got.Images); d != "" {
		t.Errorf("images (-want +got):\n%s", d)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("warnings: %q", got.Warnings)
	}
	// The script step's link command is the interpreter of its shebang.
	if c := got.Record.Tasks[0].Steps[2].ExecutedCommand(); c[0] != "/usr/bin/env" || c[1] != "bash" {
		t.Errorf("script command %q", c)
	}
}

func TestFromTaskRunChainsTestdata(t *testing.T) {
	t.Run("as found: steps without terminated state did not run", func(t *testing.T) {
		_, err := FromTaskRun(loadTaskRun(t, "chains-taskrun1.json"))
		if !errors.Is(err, ErrNothingRan) {
			t.Fatalf("err = %v, want ErrNothingRan", err)
		}
	})
	t.Run("taskrun1 terminated", func(t *testing.T) {
		got, err := FromTaskRun(withTerminated(loadTaskRun(t, "chains-taskrun1.json")))
		if err != nil {
			t.Fatal(err)
		}
		steps := got.Record.Tasks[0].Steps
		var names []string
		for _, s := range steps {
			names = append(names, s.Name)
		}
		if d := cmp.Diff([]string{"build.step1", "build.step2", "build.step3"}, names); d != "" {
			t.Errorf("step names (-want +got):\n%s", d)
		}
		// No image in the spec: the repository of the imageID stands in.
		if steps[0].Image != "gcr.io/test1/test1" || steps[0].ImageDigest != "sha256:d4b63d3e24d6eef04a6dc0795cf8a73470688803d97c52cffa3c8d4efd3397b6" {
			t.Errorf("step1 image %q %q", steps[0].Image, steps[0].ImageDigest)
		}
		const d2 = "827521c857fdcd4374f4da5442fbae2edb01e7fbae285c3ec15673d4c1daecb7"
		if steps[1].Products["gcr.io/my/image/fromstep2"]["sha256"] != d2 {
			t.Errorf("step2 ARTIFACT_OUTPUTS not a product: %v", steps[1].Products)
		}
		if steps[2].Products["gcr.io/my/image"]["sha256"] != "d31cc8328054de2bd93735f9cbf0ccfb6e0ee8f4c4225da7d8f8cb3900eaf466" {
			t.Errorf("IMAGE_URL/IMAGE_DIGEST not a product of the last step: %v", steps[2].Products)
		}
		for _, s := range []string{"gcr.io/my/image", "gcr.io/my/image/fromstep2", "gcr.io/my/image/fromstep3"} {
			if _, ok := got.Subjects[s]; !ok {
				t.Errorf("subject %s missing: %v", s, got.Subjects)
			}
		}
		// pipelineTask label without a PipelineRun UID: bound to the TaskRun, with a warning.
		if got.Record.RunID != "abhhf-12354-asjsdbjs23-3435353n" {
			t.Errorf("run ID %q", got.Record.RunID)
		}
		if !containsWarning(got.Warnings, "names no PipelineRun UID") {
			t.Errorf("warnings %q", got.Warnings)
		}
	})
	t.Run("multiple subjects terminated", func(t *testing.T) {
		tr := withTerminated(loadTaskRun(t, "chains-taskrun-multiple-subjects.json"))
		tr.Name, tr.UID = "test-taskrun", "uid-ms" // the file has neither; the apiserver always sets them
		got, err := FromTaskRun(tr)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"gcr.io/myimage1@sha256:db546e77d11cf34199d965d28b1107f98bcbb7630182b7d847cc31d5d21b47b0",
			"gcr.io/myimage3@sha256:8d14f5ded713f263742d371279586b264bde42ee8de97b808d1f5e205f376ade",
		}
		if d := cmp.Diff(want, got.Images); d != "" {
			t.Errorf("images (-want +got):\n%s", d)
		}
		if len(got.Subjects) != 4 {
			t.Errorf("subjects: want 2 images + 2 ARTIFACT_OUTPUTS, got %v", got.Subjects)
		}
		// A lone TaskRun: "<taskrun>.<step>".
		if n := got.Record.Tasks[0].Steps[0].Name; n != "test-taskrun.step1" {
			t.Errorf("step name %q", n)
		}
	})
}

func containsWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestFromTaskRunOddStatuses(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name    string
		tr      *v1.TaskRun
		wantErr error
		check   func(t *testing.T, b *Built)
		warn    string
	}{{
		name:    "nil",
		tr:      nil,
		wantErr: ErrMalformed,
	}, {
		name: "running",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Conditions[0].Status = corev1.ConditionUnknown
		}),
		wantErr: ErrNotDone,
	}, {
		name:    "no UID",
		tr:      minimal(func(tr *v1.TaskRun) { tr.UID = "" }),
		wantErr: ErrMalformed,
	}, {
		name:    "no name",
		tr:      minimal(func(tr *v1.TaskRun) { tr.Name = "" }),
		wantErr: ErrMalformed,
	}, {
		name: "pod never started",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Conditions[0].Status = corev1.ConditionFalse
			tr.Status.Steps = nil
		}),
		wantErr: ErrNothingRan,
	}, {
		name: "lone TaskRun",
		tr:   minimal(nil),
		check: func(t *testing.T, b *Built) {
			r := b.Record
			if r.RunID != "uid-1" || r.Pipeline != "t" || r.Tasks[0].Steps[0].Name != "tr.s" {
				t.Errorf("run %q pipeline %q step %q", r.RunID, r.Pipeline, r.Tasks[0].Steps[0].Name)
			}
			if len(b.Subjects) != 0 || len(b.Warnings) != 0 {
				t.Errorf("subjects %v warnings %q", b.Subjects, b.Warnings)
			}
		},
	}, {
		name: "owner reference gives the run ID",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Labels = map[string]string{"tekton.dev/pipelineTask": "pt"}
			tr.OwnerReferences = []metav1.OwnerReference{{Kind: "PipelineRun", Name: "pr", UID: "pr-uid"}}
		}),
		check: func(t *testing.T, b *Built) {
			if b.Record.RunID != "pr-uid" || b.Record.Tasks[0].Steps[0].Name != "pt.s" {
				t.Errorf("run %q step %q", b.Record.RunID, b.Record.Tasks[0].Steps[0].Name)
			}
		},
	}, {
		name: "failed step then skipped step",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Conditions[0].Status = corev1.ConditionFalse
			tr.Status.Steps[0].Terminated.ExitCode = 2
			tr.Status.Steps = append(tr.Status.Steps, v1.StepState{
				Name: "after", TerminationReason: "Skipped",
				ContainerState: corev1.ContainerState{Terminated: terminated(1, "2026-01-01T00:00:02Z", "2026-01-01T00:00:02Z")},
			}, v1.StepState{Name: "never"})
		}),
		check: func(t *testing.T, b *Built) {
			steps := b.Record.Tasks[0].Steps
			if len(steps) != 1 || steps[0].ExitCode != 2 {
				t.Errorf("steps %+v", steps)
			}
		},
		warn: "step after was skipped",
	}, {
		name: "no imageID",
		tr:   minimal(func(tr *v1.TaskRun) { tr.Status.Steps[0].ImageID = "" }),
		check: func(t *testing.T, b *Built) {
			s := b.Record.Tasks[0].Steps[0]
			if s.Image != "alpine:3" || s.ImageDigest != "" {
				t.Errorf("image %q digest %q", s.Image, s.ImageDigest)
			}
		},
		warn: "names no sha256 digest",
	}, {
		name: "local image ID is not a manifest digest",
		tr:   minimal(func(tr *v1.TaskRun) { tr.Status.Steps[0].ImageID = "docker://" + digestA }),
		check: func(t *testing.T, b *Built) {
			if d := b.Record.Tasks[0].Steps[0].ImageDigest; d != "" {
				t.Errorf("digest %q", d)
			}
		},
		warn: "names no sha256 digest",
	}, {
		name: "no spec and no imageID",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.TaskSpec = nil
			tr.Status.Steps[0].ImageID = ""
		}),
		check: func(t *testing.T, b *Built) {
			if s := b.Record.Tasks[0].Steps[0]; s.Image != "" || len(s.Command) != 0 {
				t.Errorf("step %+v", s)
			}
		},
		warn: "neither taskSpec nor imageID",
	}, {
		name: "huge result",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Results = []v1.TaskRunResult{{Name: "blob", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(huge)}}
		}),
		check: func(t *testing.T, b *Built) {
			task := b.Record.Tasks[0]
			if v := task.Results["blob"]; len(v) > 200 || !strings.Contains(v, sha(huge)) {
				t.Errorf("inline value of a 1 MiB result: %d bytes %.100q", len(v), v)
			}
			if d := task.Steps[0].Products["results/blob"]["sha256"]; d != sha(huge) {
				t.Errorf("product digest %q, want sha256 of the whole value", d)
			}
		},
	}, {
		name: "array and object results hash their JSON",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Results = []v1.TaskRunResult{
				{Name: "arr", Type: v1.ResultsTypeArray, Value: *v1.NewStructuredValues("a", "b")},
				{Name: "obj", Type: v1.ResultsTypeObject, Value: *v1.NewObject(map[string]string{"k2": "v", "k1": "w"})},
			}
		}),
		check: func(t *testing.T, b *Built) {
			p := b.Record.Tasks[0].Steps[0].Products
			if p["results/arr"]["sha256"] != sha(`["a","b"]`) || p["results/obj"]["sha256"] != sha(`{"k1":"w","k2":"v"}`) {
				t.Errorf("products %v", p)
			}
		},
	}, {
		name: "odd step artifacts",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Steps[0].Outputs = []v1.Artifact{
				{Name: "md5only", Values: []v1.ArtifactValue{{Uri: "file://a", Digest: map[v1.Algorithm]string{"md5": "d41d8cd98f00b204e9800998ecf8427e"}}}},
				{Name: "badhex", Values: []v1.ArtifactValue{{Uri: "file://b", Digest: map[v1.Algorithm]string{"sha256": "zz"}}}},
				{Name: "nouri", Values: []v1.ArtifactValue{{Digest: map[v1.Algorithm]string{"SHA256": strings.Repeat("AB", 32)}}}},
				{Values: []v1.ArtifactValue{{}}},
			}
		}),
		check: func(t *testing.T, b *Built) {
			want := run.Artifacts{"artifacts/nouri": {"sha256": strings.Repeat("ab", 32)}}
			if d := cmp.Diff(want, b.Record.Tasks[0].Steps[0].Products); d != "" {
				t.Errorf("products (-want +got):\n%s", d)
			}
			for _, w := range []string{`unsupported digest algorithm "md5"`, "is not 64 hex digits", "neither URI nor artifact name"} {
				if !containsWarning(b.Warnings, w) {
					t.Errorf("no warning %q in %q", w, b.Warnings)
				}
			}
		},
	}, {
		name: "malformed type hints are not outputs",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Results = []v1.TaskRunResult{
				{Name: "A_IMAGE_URL", Value: *v1.NewStructuredValues("example.com/a")},
				{Name: "B_IMAGE_URL", Value: *v1.NewStructuredValues("example.com/b")},
				{Name: "B_IMAGE_DIGEST", Value: *v1.NewStructuredValues("md5:abc")},
				{Name: "X_ARTIFACT_OUTPUTS", Value: *v1.NewStructuredValues("not an object")},
				{Name: "IMAGES", Value: *v1.NewStructuredValues("example.com/c:latest")},
				{Name: "IN_ARTIFACT_INPUTS", Type: v1.ResultsTypeObject, Value: *v1.NewObject(map[string]string{"uri": "git+https://x", "digest": "sha1:" + strings.Repeat("0", 40)})},
			}
		}),
		check: func(t *testing.T, b *Built) {
			if len(b.Subjects) != 0 || len(b.Images) != 0 {
				t.Errorf("subjects %v images %v", b.Subjects, b.Images)
			}
			if m := b.Record.Tasks[0].Steps[0].Materials; m["git+https://x"]["sha1"] != strings.Repeat("0", 40) {
				t.Errorf("ARTIFACT_INPUTS not a material: %v", m)
			}
			for _, w := range []string{"A_IMAGE_URL has no matching A_IMAGE_DIGEST", "B_IMAGE_URL", "X_ARTIFACT_OUTPUTS is not an object", `"example.com/c:latest" is not an image reference with a digest`} {
				if !containsWarning(b.Warnings, w) {
					t.Errorf("no warning %q in %q", w, b.Warnings)
				}
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromTaskRun(tc.tr)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			if tc.warn != "" && !containsWarning(got.Warnings, tc.warn) {
				t.Errorf("no warning %q in %q", tc.warn, got.Warnings)
			}
		})
	}
}
