package admission

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podView is the part of a Pod the Pod webhooks read — its name and
// owners (for Events), its placement (for the platform) and every image
// field with its pull policy — and all that a review's object and
// oldObject are decoded into. Decoding the whole corev1.Pod (resources,
// env, probes, managedFields) was most of the webhook's CPU per warm
// review. The field names are corev1.Pod's and encoding/json decodes both
// (case-insensitive keys, the last duplicate winning), so a Pod the
// apiserver sends reads the same either way (TestPodViewMatchesPod,
// FuzzPodView).
type podView struct {
	Metadata struct {
		Name            string                  `json:"name"`
		GenerateName    string                  `json:"generateName"`
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		NodeName            string            `json:"nodeName"`
		NodeSelector        map[string]string `json:"nodeSelector"`
		InitContainers      []containerView   `json:"initContainers"`
		Containers          []containerView   `json:"containers"`
		EphemeralContainers []containerView   `json:"ephemeralContainers"`
		Volumes             []volumeView      `json:"volumes"`
	} `json:"spec"`
}

// containerView is what a container, init container or ephemeral
// container (its EphemeralContainerCommon is inline) says about its image.
type containerView struct {
	Name            string            `json:"name"`
	Image           string            `json:"image"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy"`
}

// volumeView is a volume's name and, for an image volume, its image (the
// VolumeSource is inline in corev1.Volume).
type volumeView struct {
	Name  string                    `json:"name"`
	Image *corev1.ImageVolumeSource `json:"image"`
}

// pod returns the view as a Pod holding only those fields.
func (v *podView) pod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.GenerateName, p.OwnerReferences = v.Metadata.Name, v.Metadata.GenerateName, v.Metadata.OwnerReferences
	s := &p.Spec
	s.NodeName, s.NodeSelector = v.Spec.NodeName, v.Spec.NodeSelector
	s.InitContainers = containers(v.Spec.InitContainers)
	s.Containers = containers(v.Spec.Containers)
	if v.Spec.EphemeralContainers != nil {
		s.EphemeralContainers = make([]corev1.EphemeralContainer, len(v.Spec.EphemeralContainers))
		for i, c := range v.Spec.EphemeralContainers {
			s.EphemeralContainers[i].EphemeralContainerCommon = corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
		}
	}
	if v.Spec.Volumes != nil {
		s.Volumes = make([]corev1.Volume, len(v.Spec.Volumes))
		for i, vol := range v.Spec.Volumes {
			s.Volumes[i].Name, s.Volumes[i].Image = vol.Name, vol.Image
		}
	}
	return p
}

func containers(cs []containerView) []corev1.Container {
	if cs == nil {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy}
	}
	return out
}
