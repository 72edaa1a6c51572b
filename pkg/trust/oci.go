package trust

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/oci"
)

// OCIScheme prefixes a repository kept in an OCI registry:
// oci://<registry>/<repository>. Each metadata file is a one-layer OCI
// artifact tagged with its file name (1.root.json, timestamp.json,
// 3.payments.json, …), each hosted target file one tagged
// target.<sha256>; `stepseal trust publish DIR oci://…` writes them.
// The registry is as untrusted as any mirror: every byte is checked by the
// guard and go-tuf, and every target file against its role.
const OCIScheme = "oci://"

// ArtifactType is the artifactType of TUF files stored in a registry.
const ArtifactType = "application/vnd.stepseal.tuf.v1"

// LayerType is the media type of their only layer: the file's bytes.
const LayerType = "application/vnd.stepseal.tuf.file.v1"

// TargetTag is the tag of a hosted target file of the given sha256 (hex)
// in an OCI repository.
func TargetTag(sha string) string { return "target." + sha }

// IsOCI says whether a source is an OCI repository.
func IsOCI(source string) bool { return strings.HasPrefix(source, OCIScheme) }

// ociTag parses oci://<registry>/<repository>/<tag>.
func ociTag(u string) (name.Tag, error) {
	rest := strings.TrimPrefix(u, OCIScheme)
	i := strings.LastIndex(rest, "/")
	if i <= 0 {
		return name.Tag{}, fmt.Errorf("%q: want oci://<registry>/<repository>", u)
	}
	return name.NewTag(rest[:i]+":"+rest[i+1:], name.StrictValidation)
}

// getOCI is get for an OCI source: the file's artifact, capped at
// maxLength before its layer is read. A manifest the registry does not
// have (404, or 403 as some registries answer for it) is go-tuf's 404,
// which ends the root walk.
func (f *fetcher) getOCI(ctx context.Context, u, role string, maxLength int64) ([]byte, error) {
	tag, err := ociTag(u)
	if err != nil {
		return nil, &Error{Category: ErrUnavailable, Role: role, Detail: "source", Err: err}
	}
	reg, err := f.registry()
	if err != nil {
		return nil, &Error{Category: ErrUnavailable, Role: role, Err: err}
	}
	f.mu.Lock()
	f.requests++
	f.mu.Unlock()
	data, _, err := reg.FetchBytes(ctx, tag, maxLength)
	f.mu.Lock()
	f.bytes += int64(len(data))
	f.mu.Unlock()
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, oci.ErrTooLarge):
		return nil, &Error{Category: ErrTooLarge, Role: role, Detail: fmt.Sprintf("%s is longer than %d bytes", u, maxLength),
			Err: &metadata.ErrDownloadLengthMismatch{Msg: err.Error()}}
	case errors.Is(err, oci.ErrNotFound), oci.StatusCode(err) == http.StatusForbidden && role == "root":
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}
	case errors.Is(err, oci.ErrArtifact), errors.Is(err, oci.ErrBlobDigest):
		return nil, &Error{Category: ErrMalformed, Role: role, Detail: u, Err: err}
	}
	return nil, f.netErr(ctx, role, u, err)
}

// registry is the OCI client of the fetcher (ClientOptions.Registry, or a
// strict one).
func (f *fetcher) registry() (*oci.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reg == nil {
		reg, err := oci.New(oci.WithProgress(nil))
		if err != nil {
			return nil, err
		}
		f.reg = reg
	}
	return f.reg, nil
}
