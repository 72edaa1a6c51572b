package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

const (
	tektonModule = "github.com/tektoncd/pipeline"
	// tektonVersion is used when the binary carries no build information.
	tektonVersion = "v1.15.1"
	fieldManager  = "stepseal-kubetest"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// TektonCRDDir returns $TEKTON_CRDS, else the config/300-crds directory of the
// tektoncd/pipeline module version linked into this binary (so the CRDs match
// the generated clientset the tests use), downloading the module if needed.
func TektonCRDDir(ctx context.Context) (string, error) {
	if dir := os.Getenv("TEKTON_CRDS"); dir != "" {
		return dir, nil
	}
	version := tektonVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == tektonModule {
				if m.Replace != nil {
					m = m.Replace
				}
				version = m.Version
			}
		}
	}
	modcache, err := goEnv("GOMODCACHE")
	if err != nil {
		return "", err
	}
	// The module path has no upper-case letters, so it needs no escaping.
	dir := filepath.Join(modcache, tektonModule+"@"+version, "config", "300-crds")
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", tektonModule+"@"+version)
	cmd.Dir = os.TempDir() // outside any module, so no go.mod is touched
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", tektonModule, version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s %v", tektonModule, version, mod.Error, err)
	}
	return filepath.Join(mod.Dir, "config", "300-crds"), nil
}

// applyCRDs server-side applies every CustomResourceDefinition in dir's YAML
// files (client-side apply would exceed the annotation size limit: Tekton's
// CRDs are up to 460 kB) and waits until each is Established.
func applyCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	crds, err := readCRDs(dir)
	if err != nil {
		return err
	}
	if len(crds) == 0 {
		return fmt.Errorf("no CustomResourceDefinitions in %s", dir)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	client := dyn.Resource(crdGVR)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	errs := make([]error, len(crds))
	var wg sync.WaitGroup
	for i, crd := range crds {
		wg.Go(func() {
			if _, err := client.Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				errs[i] = fmt.Errorf("applying %s: %w", crd.GetName(), err)
				return
			}
			errs[i] = waitEstablished(ctx, client, crd.GetName())
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func readCRDs(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var crds []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 64*1024)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			u := &unstructured.Unstructured{Object: obj}
			if len(obj) == 0 || u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			crds = append(crds, u)
		}
	}
	return crds, nil
}

func waitEstablished(ctx context.Context, client dynamic.ResourceInterface, name string) error {
	for {
		crd, err := client.Get(ctx, name, metav1.GetOptions{})
		if err == nil && established(crd) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
