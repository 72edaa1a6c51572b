// Package stepaction holds stepseal's Tekton StepActions in the catalog
// layout (TEP-0003: <name>/<version>/<name>.yaml with README.md, samples/
// and tests/), and the static test every one of them and of ../task must
// pass: strict decode with Tekton's types, Tekton's own validation, the
// version label, the catalog annotations, no script, pinned images.
package stepaction
