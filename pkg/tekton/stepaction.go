package tekton

import (
	"context"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	clientset "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	typedv1beta1 "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/typed/pipeline/v1beta1"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// stepActionNamespace is the namespace the local StepActions are served
// in to Tekton's resolution code, which looks StepActions up in the
// TaskRun's namespace; the TaskRun handed to it is given the same one.
const stepActionNamespace = "stepseal-local"

// HasStepRefs reports whether a step of ts references a StepAction.
func HasStepRefs(ts *v1.TaskSpec) bool {
	for _, st := range ts.Steps {
		if st.Ref != nil {
			return true
		}
	}
	return false
}

// ResolveSteps returns the steps of ts with every StepAction reference
// resolved by Tekton's TaskRun reconciler code (GetStepActionsData): the
// StepAction's image, command, args, script, env, workingDir,
// securityContext, volumeMounts and results merged into the step, the
// step's params (after tr's params are substituted into them) and the
// StepAction's param defaults substituted into it. tr is the TaskRun the
// steps run in (its params); nil: none, as the layout generator sees a
// Task before any run. The stepTemplate is not merged: Tekton merges it
// into the resolved steps when it builds the Pod.
func (s *Spec) ResolveSteps(ctx context.Context, pipelineTask string, ts *v1.TaskSpec, tr *v1.TaskRun) ([]v1.Step, error) {
	if !HasStepRefs(ts) {
		return append([]v1.Step(nil), ts.Steps...), nil
	}
	if tr == nil {
		tr = &v1.TaskRun{}
	}
	tr = tr.DeepCopy()
	tr.Namespace = stepActionNamespace
	tr.Status.Steps = nil
	for i, st := range ts.Steps {
		if st.Ref == nil {
			continue
		}
		if err := s.checkStepRef(pipelineTask, st, i); err != nil {
			return nil, err
		}
	}
	steps, err := trresources.GetStepActionsData(ctx, *ts.DeepCopy(), tr, localStepActions{s.StepActions}.client(), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: pipeline task %q: StepAction: %v", ErrInvalid, s.Path, pipelineTask, oneLine(err.Error()))
	}
	return steps, nil
}

// checkStepRef refuses what the local runner cannot resolve: remote
// resolution, and a StepAction none of the files holds.
func (s *Spec) checkStepRef(pipelineTask string, st v1.Step, i int) error {
	name := st.Name
	if name == "" {
		name = fmt.Sprintf("unnamed-%d", i)
	}
	if r := st.Ref.Resolver; r != "" {
		return fmt.Errorf("%w: %s: pipeline task %q step %q: StepAction ref with resolver %q (remote resolution) is not supported by the local runner", ErrInvalid, s.Path, pipelineTask, name, r)
	}
	if st.Ref.Name == "" {
		return fmt.Errorf("%w: %s: pipeline task %q step %q: StepAction ref without a name", ErrInvalid, s.Path, pipelineTask, name)
	}
	if _, ok := s.StepActions[st.Ref.Name]; !ok {
		return fmt.Errorf("%w: %s: pipeline task %q step %q references StepAction %q, which is not loaded", ErrInvalid, s.Path, pipelineTask, name, st.Ref.Name)
	}
	return nil
}

// localStepActions serves the loaded StepActions to Tekton's local
// StepAction resolver (LocalStepActionRefResolver), which reads them
// through a clientset: only TektonV1beta1().StepActions(ns).Get is
// implemented; anything else panics on the nil embedded interfaces rather
// than pretend to work.
type localStepActions struct {
	byName map[string]*v1beta1.StepAction
}

func (l localStepActions) client() clientset.Interface { return stepActionClient{l: l} }

type stepActionClient struct {
	clientset.Interface
	l localStepActions
}

func (c stepActionClient) TektonV1beta1() typedv1beta1.TektonV1beta1Interface {
	return stepActionsV1beta1{l: c.l}
}

type stepActionsV1beta1 struct {
	typedv1beta1.TektonV1beta1Interface
	l localStepActions
}

func (c stepActionsV1beta1) StepActions(namespace string) typedv1beta1.StepActionInterface {
	return stepActionGetter{l: c.l, namespace: namespace}
}

type stepActionGetter struct {
	typedv1beta1.StepActionInterface
	l         localStepActions
	namespace string
}

func (g stepActionGetter) Get(_ context.Context, name string, _ metav1.GetOptions) (*v1beta1.StepAction, error) {
	sa, ok := g.l.byName[name]
	if !ok || g.namespace != stepActionNamespace {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "tekton.dev", Resource: "stepactions"}, name)
	}
	return sa.DeepCopy(), nil
}
