package admission

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// admissionView is what the Pod webhooks read of a Pod.
type admissionView struct {
	Name, GenerateName string
	Owners             []metav1.OwnerReference
	NodeName           string
	NodeSelector       map[string]string
	Fields             []ImageField
}

func viewOf(p *corev1.Pod) admissionView {
	return admissionView{p.Name, p.GenerateName, p.OwnerReferences, p.Spec.NodeName, p.Spec.NodeSelector, ImageFields(&p.Spec)}
}

// sameView decodes raw as a whole corev1.Pod and as a podView and, when
// the Pod decodes, asserts that admission reads the same of both. It
// reports whether the Pod decoded.
func sameView(t *testing.T, raw []byte) bool {
	t.Helper()
	var full corev1.Pod
	if json.Unmarshal(raw, &full) != nil {
		return false
	}
	var v podView
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("the Pod decodes, its view does not: %v\n%s", err, raw)
	}
	if got, want := viewOf(v.pod()), viewOf(&full); !reflect.DeepEqual(got, want) {
		t.Fatalf("view %+v\nPod  %+v\nof %s", got, want, raw)
	}
	return true
}

// TestPodViewMatchesPod: for Pods as the apiserver sends them and for
// JSON only encoding/json's rules make equal (key case, duplicates,
// nulls, the inline EphemeralContainerCommon and VolumeSource), the view
// admission decodes holds what the whole Pod holds.
func TestPodViewMatchesPod(t *testing.T) {
	full := apiserverPod("registry.example/apps/web:v1")
	yes := true
	full.OwnerReferences = []metav1.OwnerReference{{APIVersion: "tekton.dev/v1", Kind: "TaskRun", Name: "build", UID: "u1", Controller: &yes}}
	full.GenerateName, full.Spec.NodeName = "web-", "node-1"
	full.Spec.NodeSelector = map[string]string{"stepseal.dev/platform": "prod"}
	full.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.example/init@sha256:" + strings.Repeat("b", 64), ImagePullPolicy: corev1.PullAlways,
		Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}
	full.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox", ImagePullPolicy: corev1.PullNever}, TargetContainerName: "app"}}
	full.Spec.Volumes = []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "registry.example/model:v2", PullPolicy: corev1.PullIfNotPresent}}},
	}
	raw, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"apiserver Pod":     string(raw),
		"minimal Pod":       `{"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		"key case":          `{"Metadata":{"NAME":"p"},"SPEC":{"Containers":[{"Name":"a","IMAGE":"x","ImagePullPolicy":"Always"}],"NodeName":"n"}}`,
		"duplicate keys":    `{"spec":{"containers":[{"image":"first","image":"second"}],"containers":[{"name":"b","image":"last"}]}}`,
		"nulls":             `{"metadata":null,"spec":{"containers":null,"initContainers":[null],"volumes":[{"name":"v","image":null}]}}`,
		"image volume":      `{"spec":{"volumes":[{"name":"v","image":{"reference":"r/m:1","pullPolicy":"Always"},"emptyDir":{}}]}}`,
		"ephemeral targets": `{"spec":{"ephemeralContainers":[{"name":"d","image":"x","targetContainerName":"a","command":["sh"]}]}}`,
		"unknown fields":    `{"spec":{"containers":[{"image":"x","stepseal":1}],"future":{"image":"y"}},"status":{"containerStatuses":[{"image":"z"}]}}`,
	} {
		if !sameView(t, []byte(doc)) {
			t.Errorf("%s: the Pod does not decode", name)
		}
	}
}

// FuzzPodView: on any input a whole corev1.Pod decodes from, the view
// decodes and admission reads the same of both; nothing panics.
func FuzzPodView(f *testing.F) {
	raw, _ := json.Marshal(apiserverPod("registry.example/apps/web:v1"))
	f.Add(raw)
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"i","image":"a@sha256:00"}],"ephemeralContainers":[{"image":"b"}],"volumes":[{"image":{"reference":"c"}}],"nodeSelector":{"k":"v"}}}`))
	f.Add([]byte(`{"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"r","controller":true}]},"SPEC":{"Containers":[{"IMAGE":"x","image":"y"}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		sameView(t, raw)
	})
}
