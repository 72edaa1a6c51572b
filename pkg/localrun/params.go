package localrun

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func typesUID(s string) types.UID { return types.UID(s) }

func emptyDirBinding(name, subPath string) v1.WorkspaceBinding {
	return v1.WorkspaceBinding{Name: name, SubPath: subPath, EmptyDir: &corev1.EmptyDirVolumeSource{}}
}

// pipelineRunParams turns the caller's string params into typed PipelineRun
// params: strings as given, arrays and objects parsed from JSON.
func pipelineRunParams(pipeline string, specs v1.ParamSpecs, given map[string]string) (v1.Params, error) {
	byName := map[string]v1.ParamSpec{}
	var declared []string
	for _, s := range specs {
		byName[s.Name] = s
		declared = append(declared, s.Name)
	}
	names := make([]string, 0, len(given))
	for n := range given {
		names = append(names, n)
	}
	sort.Strings(names)
	var out v1.Params
	for _, n := range names {
		s, ok := byName[n]
		if !ok {
			return nil, invalid("pipeline %s: unknown param %q (declared: %s)", pipeline, n, strings.Join(declared, ", "))
		}
		raw := given[n]
		switch s.Type {
		case v1.ParamTypeArray:
			var a []string
			if err := json.Unmarshal([]byte(raw), &a); err != nil {
				return nil, invalid("pipeline %s: param %q is an array: give it as a JSON array of strings (%v)", pipeline, n, err)
			}
			out = append(out, v1.Param{Name: n, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: a}})
		case v1.ParamTypeObject:
			var o map[string]string
			if err := json.Unmarshal([]byte(raw), &o); err != nil {
				return nil, invalid("pipeline %s: param %q is an object: give it as a JSON object of strings (%v)", pipeline, n, err)
			}
			out = append(out, v1.Param{Name: n, Value: v1.ParamValue{Type: v1.ParamTypeObject, ObjectVal: o}})
		default:
			out = append(out, v1.Param{Name: n, Value: v1.ParamValue{Type: v1.ParamTypeString, StringVal: raw}})
		}
	}
	return out, nil
}

// mergeParams is a run's params with over's replacing those of the same
// name and the rest of over added, in name order.
func mergeParams(run, over v1.Params) v1.Params {
	replaced := map[string]bool{}
	for _, p := range over {
		replaced[p.Name] = true
	}
	var out v1.Params
	for _, p := range run {
		if !replaced[p.Name] {
			out = append(out, p)
		}
	}
	return append(out, over...)
}

// effectiveParams returns every pipeline param's value for the record (given
// or defaulted, defaults referencing other params resolved), computed by
// Tekton's own ApplyParameters on a probe task that passes each param on.
func effectiveParams(ps *v1.PipelineSpec, pr *v1.PipelineRun) (map[string]string, error) {
	probe := v1.PipelineTask{Name: "probe", TaskRef: &v1.TaskRef{Name: "probe"}}
	for _, s := range ps.Params {
		ref := "$(params." + s.Name + ")"
		if s.Type == v1.ParamTypeArray || s.Type == v1.ParamTypeObject {
			ref = "$(params." + s.Name + "[*])"
		}
		probe.Params = append(probe.Params, v1.Param{Name: s.Name, Value: *v1.NewStructuredValues(ref)})
	}
	spec := &v1.PipelineSpec{Params: ps.Params, Tasks: []v1.PipelineTask{probe}}
	applied, err := prresources.ApplyParameters(spec, pr)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range applied.Tasks[0].Params {
		out[p.Name] = paramString(p.Value)
	}
	return out, nil
}

// paramString renders a param or result value for the record: strings as
// they are, arrays and objects as JSON.
func paramString(v v1.ParamValue) string {
	switch v.Type {
	case v1.ParamTypeArray:
		b, _ := json.Marshal(v.ArrayVal)
		return string(b)
	case v1.ParamTypeObject:
		b, _ := json.Marshal(v.ObjectVal)
		return string(b)
	}
	return v.StringVal
}

func paramsMap(ps v1.Params) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]string, len(ps))
	for _, p := range ps {
		out[p.Name] = paramString(p.Value)
	}
	return out
}

// checkTaskParams does for a TaskRun what Tekton's taskrun reconciler does
// before it runs: every Task param without a default is provided, and
// provided params have the declared type.
func checkTaskParams(ptName string, ts *v1.TaskSpec, given v1.Params) error {
	have := map[string]v1.ParamValue{}
	for _, p := range given {
		have[p.Name] = p.Value
	}
	var missing, wrong []string
	for _, s := range ts.Params {
		v, ok := have[s.Name]
		if !ok {
			if s.Default == nil {
				missing = append(missing, s.Name)
			}
			continue
		}
		want := s.Type
		if want == "" {
			want = v1.ParamTypeString
		}
		if v.Type != want {
			wrong = append(wrong, fmt.Sprintf("%s (want %s, got %s)", s.Name, want, v.Type))
		}
		if want == v1.ParamTypeObject {
			for k := range s.Properties {
				if _, ok := v.ObjectVal[k]; !ok {
					wrong = append(wrong, fmt.Sprintf("%s (missing key %q)", s.Name, k))
				}
			}
		}
	}
	if len(missing) > 0 {
		return invalid("pipeline task %s: missing param(s) %s", ptName, strings.Join(missing, ", "))
	}
	if len(wrong) > 0 {
		return invalid("pipeline task %s: param(s) of the wrong type: %s", ptName, strings.Join(wrong, "; "))
	}
	return nil
}
