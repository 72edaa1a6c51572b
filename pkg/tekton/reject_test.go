package tekton

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

func TestInvalidIsMalformed(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"not YAML":       "kind: Pipeline\n  spec: [",
		"not a Pipeline": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
		"unknown field":  "apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: p}\nspec: {taskz: []}\n",
		"task not found": "apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n  tasks:\n  - name: a\n    taskRef: {name: missing}\n",
	} {
		p := filepath.Join(dir, "pipeline.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(t.Context(), p, dir)
		rejecttest.Is(t, name, err, reject.ErrMalformed)
	}
}
