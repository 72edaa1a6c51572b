// Package settings is the controller's configuration: the ConfigMap
// stepseal-config in the controller's namespace, parsed into a Config and held
// in a Store that the configmap watcher updates live. A malformed ConfigMap
// leaves the last good Config in place and is reported with a Warning Event.
//
// BackendKinds is the one table of storage backends: for each name the
// backends key may list, whether it stores entries or attaches to images,
// the ConfigMap keys of its settings (how Parse checks them) and how the
// reconcilers open it (through a backends.Stores). Adding a backend is adding
// a row.
package settings
