// Package generate turns a Tekton Pipeline into an in-toto layout: one layout
// step per Task step, the functionaries allowed to perform it (from a
// layout.Functionaries file), and artifact rules derived from how the
// pipeline's tasks share workspaces. It is the part of layout generation that
// reads Tekton's types, kept apart from pkg/layout so that programs that only
// sign, load or verify layouts do not link Tekton.
package generate
