package settings

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/leaderelection"
	"sigs.k8s.io/yaml"
)

// The released ConfigMap must be valid, and its _example must be a valid
// configuration that spells out the defaults.
func TestReleasedConfigMap(t *testing.T) {
	b, err := os.ReadFile("../config/300-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != ConfigMapName || cm.Namespace != "stepseal" {
		t.Errorf("ConfigMap %s/%s", cm.Namespace, cm.Name)
	}
	if _, err := Parse(cm.Data); err != nil {
		t.Fatal(err)
	}
	var example map[string]string
	if err := yaml.Unmarshal([]byte(cm.Data["_example"]), &example); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(example)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Defaults(), got); d != "" {
		t.Errorf("_example differs from the defaults (-defaults +example):\n%s", d)
	}
}

// The released config-leader-election must parse as knative reads it.
func TestReleasedLeaderElection(t *testing.T) {
	b, err := os.ReadFile("../config/300-leader-election.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != leaderelection.ConfigMapName() || cm.Namespace != "stepseal" {
		t.Errorf("ConfigMap %s/%s, want stepseal/%s", cm.Namespace, cm.Name, leaderelection.ConfigMapName())
	}
	cfg, err := leaderelection.NewConfigFromConfigMap(&cm)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Buckets != 4 || cfg.LeaseDuration != 15*time.Second {
		t.Errorf("buckets %d lease-duration %v, want 4 and 15s", cfg.Buckets, cfg.LeaseDuration)
	}
}
