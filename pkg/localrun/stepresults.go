package localrun

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
)

// stepResultRef matches a reference to a step result,
// $(steps.<step>.results.<result>[...]), with the pattern Tekton's
// validation and entrypoint use.
var stepResultRef = regexp.MustCompile(`\$\(steps\..*?\.results\..*?\)`)

// stepResultsDir is the host directory of step i's results, as
// /tekton/steps/step-<name>/results in a Pod.
func stepResultsDir(stepsDir string, st v1.Step, i int) string {
	return filepath.Join(stepsDir, pod.StepName(st.Name, i), "results")
}

// substituteStepResults replaces references to earlier steps' results in
// st's env values, command, args and when expressions with their values,
// as Tekton's entrypoint does when the step starts: a string (or an
// array's element, an object's key); a whole array ($(steps.s.results.r[*]))
// only as a command or args element of its own, expanded into elements.
func substituteStepResults(st v1.Step, stepsDir string) (v1.Step, error) {
	st = *st.DeepCopy()
	one := func(s string) (string, error) {
		var err error
		out := stepResultRef.ReplaceAllStringFunc(s, func(ref string) string {
			v, arr, e := stepResultValue(stepsDir, ref)
			if e == nil && arr != nil {
				e = fmt.Errorf("%s: a whole array result is only accepted as a command or args element of its own", ref)
			}
			if e != nil && err == nil {
				err = e
			}
			return v
		})
		return out, err
	}
	list := func(in []string) ([]string, error) {
		var out []string
		for _, s := range in {
			if m := stepResultRef.FindString(s); m == s && m != "" {
				v, arr, err := stepResultValue(stepsDir, s)
				if err != nil {
					return nil, err
				}
				if arr != nil {
					out = append(out, arr...)
				} else {
					out = append(out, v)
				}
				continue
			}
			v, err := one(s)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	var err error
	var errs []error
	for i := range st.Env {
		st.Env[i].Value, err = one(st.Env[i].Value)
		errs = append(errs, err)
	}
	if st.Command != nil {
		st.Command, err = list(st.Command)
		errs = append(errs, err)
	}
	if st.Args != nil {
		st.Args, err = list(st.Args)
		errs = append(errs, err)
	}
	for i := range st.When {
		st.When[i].Input, err = one(st.When[i].Input)
		errs = append(errs, err)
		st.When[i].Values, err = list(st.When[i].Values)
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// stepResultValue reads the result a reference names: a string, or an
// array (arr non-nil) for a whole-array reference.
func stepResultValue(stepsDir, ref string) (val string, arr []string, err error) {
	expr := strings.TrimSuffix(strings.TrimPrefix(ref, "$(steps."), ")")
	stepName, rest, ok := strings.Cut(expr, ".results.")
	if !ok || stepName == "" || rest == "" {
		return "", nil, fmt.Errorf("%s: not a step result reference", ref)
	}
	name, key, idx := rest, "", ""
	if i := strings.IndexByte(rest, '['); i > 0 && strings.HasSuffix(rest, "]") {
		name, idx = rest[:i], rest[i+1:len(rest)-1]
	} else if i := strings.IndexByte(rest, '.'); i > 0 {
		name, key = rest[:i], rest[i+1:]
	}
	b, err := readStepResult(filepath.Join(stepsDir, pod.StepName(stepName, 0), "results", name))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", ref, err)
	}
	var v v1.ResultValue
	if err := v.UnmarshalJSON(b); err != nil {
		return "", nil, fmt.Errorf("%s: %w", ref, err)
	}
	switch {
	case idx == "*":
		if v.Type != v1.ParamTypeArray {
			return "", nil, fmt.Errorf("%s: result %s of step %s is not an array", ref, name, stepName)
		}
		return "", append([]string{}, v.ArrayVal...), nil
	case idx != "":
		n, err := strconv.Atoi(idx)
		if err != nil || v.Type != v1.ParamTypeArray || n < 0 || n >= len(v.ArrayVal) {
			return "", nil, fmt.Errorf("%s: result %s of step %s has no element %s", ref, name, stepName, idx)
		}
		return v.ArrayVal[n], nil, nil
	case key != "":
		if v.Type != v1.ParamTypeObject {
			return "", nil, fmt.Errorf("%s: result %s of step %s is not an object", ref, name, stepName)
		}
		return v.ObjectVal[key], nil, nil
	}
	return v.StringVal, nil, nil
}

// readStepResult reads one step result file, capped like task results.
func readStepResult(p string) ([]byte, error) {
	files, err := readResultFiles(filepath.Dir(p))
	if err != nil {
		return nil, err
	}
	b, ok := files[filepath.Base(p)]
	if !ok {
		return nil, fmt.Errorf("not written (no file %s)", filepath.Base(p))
	}
	if len(b) > MaxResultSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxResultSize)
	}
	return b, nil
}
