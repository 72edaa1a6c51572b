// Package catalog packs stepseal's Tekton catalog — its Tasks and
// StepActions, their images already pinned by digest (ko resolve) — into one
// Tekton bundle as Tekton's bundle contract describes it (one resource per
// layer, at most 20 layers, each layer annotated dev.tekton.image.apiVersion,
// .kind and .name, so the bundles resolver finds a resource by kind and
// name), then pushes it by digest, signs it in cosign's format and only then
// tags it. hack/release.sh calls it through hack/catalog-bundle.
package catalog
