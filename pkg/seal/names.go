package seal

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
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

// attemptInfix separates a link name's key ID prefix from the attempt
// number in AttemptLinkName.
const attemptInfix = ".attempt-"

// AttemptLinkName is the name of the link of a step of a task attempt that
// failed and was retried, signed by keyID:
// "<step>.<keyid[:8]>.attempt-<n>.link" (n from 1). The last attempt's
// links keep LinkName, so layouts verify it; these names are neither taken
// by ParseLinkName nor matched by in-toto-golang's "<step>.????????.link"
// glob, so verifiers leave earlier attempts aside.
func AttemptLinkName(step, keyID string, attempt int) string {
	return fmt.Sprintf("%s.%.8s%s%d.link", step, keyID, attemptInfix, attempt)
}

// ParseAttemptLinkName splits a name AttemptLinkName builds into the step,
// the key ID prefix and the attempt number.
func ParseAttemptLinkName(name string) (step, keyIDPrefix string, attempt int, ok bool) {
	stem, ok := strings.CutSuffix(name, ".link")
	if !ok {
		return "", "", 0, false
	}
	i := strings.LastIndex(stem, attemptInfix)
	if i < 0 {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(stem[i+len(attemptInfix):])
	if err != nil || n < 1 || strconv.Itoa(n) != stem[i+len(attemptInfix):] {
		return "", "", 0, false
	}
	step, keyIDPrefix, ok = ParseLinkName(stem[:i] + ".link")
	if !ok {
		return "", "", 0, false
	}
	return step, keyIDPrefix, n, true
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

// VSAName is the store name of a PipelineRun's verification summary (a
// SLSA VSA) about its images in the repository resourceURI, signed by
// keyID: "<namespace>/<name>.<keyid[:8]>.<sha256(resourceURI)[:12]>.vsa"
// (one VSA per repository the run published to).
func VSAName(namespace, name, keyID, resourceURI string) string {
	h := sha256.Sum256([]byte(resourceURI))
	return fmt.Sprintf("%s/%s.%.8s.%s.vsa", namespace, name, keyID, hex.EncodeToString(h[:6]))
}
