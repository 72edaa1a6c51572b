package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
)

// Names of the results the stepseal-publish Task declares: Tekton Chains'
// type hints for an image (IMAGE_URL + IMAGE_DIGEST) and for a non-image
// build artifact (ARTIFACT_OUTPUTS, an object {uri, digest,
// isBuildArtifact}).
const (
	ResultImageURL        = "IMAGE_URL"
	ResultImageDigest     = "IMAGE_DIGEST"
	ResultArtifactOutputs = "ARTIFACT_OUTPUTS"
)

// TaskResults are what a publish reports to Tekton, in the forms Chains
// reads.
type TaskResults struct {
	// ImageURL is the reference asked for (registry/repository:tag; the
	// repository alone when it was asked for by digest), ImageDigest the
	// digest of what was pushed: sha256:<hex>.
	ImageURL, ImageDigest string
	// Artifact is set for a file or directory artifact: the published
	// location by digest and the sha256 of the content as given (a file's
	// sha256, a directory's tar stream), before encryption. It is nil for
	// an image, whose subject IMAGE_URL/IMAGE_DIGEST already is.
	Artifact *ArtifactOutput
}

// ArtifactOutput is the object result ARTIFACT_OUTPUTS. Its fields are
// strings: Tekton object results hold string properties only.
type ArtifactOutput struct {
	URI             string `json:"uri"`
	Digest          string `json:"digest"`
	IsBuildArtifact string `json:"isBuildArtifact"`
}

// TaskResultsOf are the results of r, src being the artifact as given to
// Publish (before encryption).
func TaskResultsOf(src v1.Image, r *Result) (*TaskResults, error) {
	out := &TaskResults{ImageURL: r.Ref.String(), ImageDigest: r.Digest.DigestStr()}
	if _, ok := r.Ref.(name.Digest); ok {
		// IMAGE_URL@IMAGE_DIGEST must parse (Chains joins them): the
		// repository alone, not a second digest.
		out.ImageURL = r.Ref.Context().Name()
	}
	kind, err := oci.Kind(src)
	if err != nil {
		return nil, err
	}
	if kind != oci.ArtifactTypeFile && kind != oci.ArtifactTypeDir {
		return out, nil
	}
	ds, err := oci.ArtifactDigests(src)
	if err != nil {
		return nil, err
	}
	// ArtifactDigests: the manifest digest, then the one layer's.
	content := ds[len(ds)-1]
	out.Artifact = &ArtifactOutput{URI: "oci://" + r.Digest.String(), Digest: content.String(), IsBuildArtifact: "true"}
	return out, nil
}

// ResultFiles are where WriteFiles writes each result; an empty path
// skips that result.
type ResultFiles struct {
	ImageURL, ImageDigest, ArtifactOutputs string
}

// Empty says whether no result file is asked for.
func (f ResultFiles) Empty() bool {
	return f.ImageURL == "" && f.ImageDigest == "" && f.ArtifactOutputs == ""
}

// WriteFiles writes the results to the files f names, without a trailing
// newline (Tekton keeps a result's bytes as they are). ARTIFACT_OUTPUTS is
// written only for a file or directory artifact; for an image its file is
// left absent (Tekton then reports no such result, which is not an error).
func (r *TaskResults) WriteFiles(f ResultFiles) error {
	var errs []error
	write := func(path, value string) {
		if path == "" {
			return
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil { //nolint:gosec // results are public values, read by Tekton's entrypoint
			errs = append(errs, fmt.Errorf("writing result file %s: %w", path, err))
		}
	}
	write(f.ImageURL, r.ImageURL)
	write(f.ImageDigest, r.ImageDigest)
	if r.Artifact != nil && f.ArtifactOutputs != "" {
		b, err := json.Marshal(r.Artifact)
		if err != nil {
			return err
		}
		write(f.ArtifactOutputs, string(b))
	}
	return errors.Join(errs...)
}

// ErrOutsideSource: an artifact path that is not inside the directory it
// must be taken from (a Task's source workspace): absolute, with "..", or
// through a symbolic link that leads out. A refusal of the caller's input,
// before anything is read or pushed.
// It is a reject.ErrUnauthorized.
var ErrOutsideSource = reject.Sentinel(reject.ErrUnauthorized, "artifact path leaves the source directory")

// ArtifactWithin resolves rel, a path relative to dir, to the artifact it
// names, refusing one that is empty, absolute, climbs out with "..", or
// whose real path (symbolic links followed) is not inside dir's real path:
// a publish Task must not publish its own signing key or the platform
// policy's files, which are mounted beside the source workspace.
func ArtifactWithin(dir, rel string) (string, error) {
	if strings.TrimSpace(rel) == "" {
		return "", fmt.Errorf("the artifact path is empty: name a file or directory inside %s", dir)
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: %q is not a relative path inside %s (absolute, empty or with \"..\")", ErrOutsideSource, rel, dir)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("source directory %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		return "", fmt.Errorf("artifact %q in %s: %w", rel, dir, err)
	}
	inside, err := filepath.Rel(root, real)
	if err != nil || !filepath.IsLocal(inside) && inside != "." {
		return "", fmt.Errorf("%w: %q in %s resolves to %s, outside it", ErrOutsideSource, rel, dir, real)
	}
	return real, nil
}
