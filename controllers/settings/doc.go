// Package settings is the controller's configuration: the ConfigMap
// stepseal-config in the controller's namespace, parsed into a Config and held
// in a Store that the configmap watcher updates live. A malformed ConfigMap
// leaves the last good Config in place and is reported with a Warning Event.
package settings
