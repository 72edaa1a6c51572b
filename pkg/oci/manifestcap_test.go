package oci

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stepseal/stepseal/pkg/reject"
)

// TestHugeManifestRefused (W21): a manifest over MaxManifestBytes is
// refused by its Content-Length with ErrManifestTooLarge (a policy
// refusal naming the registry and repository); one just under the cap is
// read. Distribution itself refuses to store such a manifest (its limit is
// the same 4 MiB, checked here), so the huge one is served by
// go-containerregistry's registry, which stores any size: what a hostile
// or other registry can serve.
func TestHugeManifestRefused(t *testing.T) {
	ctx := context.Background()
	dist := distribution(t)
	tg := inProcess(t)
	c, err := New(testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	huge := func(host, tag string, annotation int) (name.Digest, error) {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte("x"), types.OCILayer),
			Annotations: map[string]string{"pad": strings.Repeat("a", annotation)}})
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.NewTag(host+"/demo/huge:"+tag, name.Insecure)
		h, _ := img.Digest()
		return ref.Context().Digest(h.String()), remote.Write(ref, img)
	}
	if _, err := huge(dist.host, "big", MaxManifestBytes+1024); err == nil || !strings.Contains(err.Error(), "MANIFEST_INVALID") {
		t.Fatalf("Distribution stored a manifest over 4 MiB (%v): its limit changed", err)
	}
	big, err := huge(tg.host, "big", MaxManifestBytes+1024)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Pull(ctx, big)
	if !errors.Is(err, ErrManifestTooLarge) || reject.Of(err) != reject.ErrPolicy || !strings.Contains(err.Error(), tg.host+"/v2/demo/huge/manifests/") {
		t.Fatalf("Pull of a huge manifest: %v, want ErrManifestTooLarge naming it", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Errorf("a huge manifest is a refusal, not 'could not check': %v", err)
	}
	small, err := huge(dist.host, "small", MaxManifestBytes-4096)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, small); err != nil {
		t.Fatalf("a manifest under the cap: %v", err)
	}
}

// TestCappedBodyWithoutLength: a registry that streams a manifest without
// Content-Length is cut off at the cap (an in-process server: a real
// registry always sends the length).
func TestCappedBodyWithoutLength(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("{", 64<<10))
		for i := 0; i < (MaxManifestBytes>>16)+4; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	rt := &manifestCap{next: http.DefaultTransport, max: MaxManifestBytes}
	resp, err := (&http.Client{Transport: rt}).Get(srv.URL + "/v2/r/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if !errors.Is(err, ErrManifestTooLarge) || n > MaxManifestBytes+1 {
		t.Fatalf("read %d bytes, err %v: want ErrManifestTooLarge within the cap", n, err)
	}
	// A blob is not a manifest: not capped here.
	resp, err = (&http.Client{Transport: rt}).Get(srv.URL + "/v2/r/blobs/sha256:00")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n <= MaxManifestBytes {
		t.Fatalf("blob: %d bytes, %v", n, err)
	}
}
