// Package limited reads files stepseal parses (keys, layouts, functionaries
// files, Tekton YAML) without ever holding more than a bound: a file larger
// than it is a mistake or an attack, refused after reading one byte past it.
package limited
