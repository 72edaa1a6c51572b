/*
Copyright 2019 The Tekton Authors

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package resources

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// ResolvedTask contains the data that is needed to execute the TaskRun
// (taskspec.go upstream, without the trusted-resources VerificationResult:
// nothing here resolves or verifies remote Tasks).
type ResolvedTask struct {
	TaskName string
	Kind     v1.TaskKind
	TaskSpec *v1.TaskSpec
}

// From pkg/pod/entrypoint.go, whose package builds Pods (and links in the
// Kubernetes clients and credential helpers).

const stepPrefix = "step-"

// StepName returns the step name after adding "step-" prefix to the actual step name or
// returns "step-unnamed-<step-index>" if not specified
func StepName(name string, i int) string {
	if name != "" {
		return GetContainerName(name)
	}
	return fmt.Sprintf("%sunnamed-%d", stepPrefix, i)
}

// GetContainerName prefixes the input name with "step-"
func GetContainerName(name string) string {
	return fmt.Sprintf("%s%s", stepPrefix, name)
}
