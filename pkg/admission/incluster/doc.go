// Package incluster runs the admission webhook as the release's Deployment
// runs it (`stepseal admission serve --policy-configmap`): the policy from a
// watched ConfigMap, the serving certificate from the Secret knative's
// certificates controller fills and renews, its CA kept in the webhook
// configurations' caBundle (CAInjector), metrics, and Events through
// client-go's events.k8s.io broadcaster.
//
// It is apart from package admission because it links client-go's typed
// clientset and knative's controllers: the lean stepseal binary hands
// `admission serve --policy-configmap` over to stepseal-tekton, which links
// this package, so that its other commands stay cheap to start.
package incluster
