package seal

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/in-toto/in-toto-golang/in_toto"
)

// Names of the documents of a run kept by the embedded default (stepseal
// run) in its output directory and store.
const (
	// LayoutName is the file and store name of the run's signed layout.
	LayoutName = "root.layout"
	// LocalProvenanceName is the file and store name of a local run's
	// provenance.
	LocalProvenanceName = "provenance.json"
)

// LinkName is the name of a step's link signed by keyID:
// "<step>.<keyid[:8]>.link", the file name in-toto-golang writes and looks
// for.
func LinkName(step, keyID string) string {
	return fmt.Sprintf(in_toto.LinkNameFormat, step, keyID)
}

// ParseLinkName splits a link name "<step>.<8 characters>.link" into the
// step and the key ID prefix, as in-toto-golang's glob
// "<step>.????????.link" matches it ('?' is one character, never '/').
func ParseLinkName(name string) (step, keyIDPrefix string, ok bool) {
	stem, ok := strings.CutSuffix(name, ".link")
	if !ok {
		return "", "", false
	}
	i := len(stem)
	for n := 0; n < 8; n++ {
		if i == 0 {
			return "", "", false
		}
		_, size := utf8.DecodeLastRuneInString(stem[:i])
		i -= size
	}
	short := stem[i:]
	if i == 0 || stem[i-1] != '.' || strings.Contains(short, "/") {
		return "", "", false
	}
	return stem[:i-1], short, true
}

// IsLinkOf reports whether name is a link of step.
func IsLinkOf(name, step string) bool {
	s, _, ok := ParseLinkName(name)
	return ok && s == step
}

// TaskRunProvenanceName is the store name of a TaskRun's provenance signed
// by keyID: "<namespace>/<name>.<keyid[:8]>.provenance".
func TaskRunProvenanceName(namespace, name, keyID string) string {
	return fmt.Sprintf("%s/%s.%.8s.provenance", namespace, name, keyID)
}

// pipelineRunSuffix ends the name of a PipelineRun's provenance, so that it
// is never taken for a TaskRun's.
const pipelineRunSuffix = ".pipelinerun.provenance"

// PipelineRunProvenanceName is the store name of a PipelineRun's provenance
// signed by keyID: "<namespace>/<name>.<keyid[:8]>.pipelinerun.provenance",
// distinct from its TaskRuns'.
func PipelineRunProvenanceName(namespace, name, keyID string) string {
	return fmt.Sprintf("%s/%s.%.8s%s", namespace, name, keyID, pipelineRunSuffix)
}

// IsTaskRunProvenanceOf reports whether the store name entry is the
// provenance of the TaskRun namespace/name (signed by any key).
func IsTaskRunProvenanceOf(entry, namespace, name string) bool {
	rest, ok := strings.CutPrefix(entry, namespace+"/"+name+".")
	if !ok || strings.HasSuffix(entry, pipelineRunSuffix) {
		return false
	}
	key, ok := strings.CutSuffix(rest, ".provenance")
	return ok && key != "" && !strings.Contains(key, ".")
}
