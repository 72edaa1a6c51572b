package tekton

import (
	"context"
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Tekton's feature-flags ConfigMap, as its release installs it.
const (
	featureFlagsNamespace = "tekton-pipelines"
)

// withFeatureFlags returns ctx carrying Tekton's configuration with the
// feature flags of the run file's tekton-pipelines/feature-flags ConfigMap,
// when the file holds one, parsed by Tekton's own NewFeatureFlagsFromMap:
// what a cluster's Tekton validates and runs with (for instance
// enable-cel-in-whenexpression: "true" lets when expressions use CEL). A
// ConfigMap of that name elsewhere is a workspace source like any other.
// The second result is the note saying the flags were read ("" if not).
func withFeatureFlags(ctx context.Context, path string) (context.Context, string, error) {
	docs, err := readDocs(path)
	if err != nil {
		return ctx, "", nil // readFile reports it
	}
	for _, d := range docs {
		var meta typeMeta
		if yaml.Unmarshal(d, &meta) != nil || meta.Kind != "ConfigMap" || meta.APIVersion != "v1" || meta.Metadata.Name != config.GetFeatureFlagsConfigName() {
			continue
		}
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict(d, &cm); err != nil {
			return ctx, "", fmt.Errorf("%w: %s: ConfigMap %s: %v", ErrInvalid, path, meta.Metadata.Name, oneLine(err.Error()))
		}
		if cm.Namespace != featureFlagsNamespace {
			continue
		}
		ff, err := config.NewFeatureFlagsFromMap(cm.Data)
		if err != nil {
			return ctx, "", fmt.Errorf("%w: %s: ConfigMap %s/%s: %v", ErrInvalid, path, cm.Namespace, cm.Name, oneLine(err.Error()))
		}
		cfg := *config.FromContextOrDefaults(ctx)
		cfg.FeatureFlags = ff
		return config.ToContext(ctx, &cfg), fmt.Sprintf("stepseal: Tekton feature flags from ConfigMap %s/%s in %s", cm.Namespace, cm.Name, path), nil
	}
	return ctx, "", nil
}
