package version

import (
	"runtime/debug"
	"strings"
)

// Version is the release version; `-ldflags "-X
// github.com/stepseal/stepseal/pkg/version.Version=v1.2.3"` sets it. Left
// empty, the main module's version from the build info is used (a tag for
// `go install …@vX`, "(devel)" for a build from a checkout).
var Version string

// Modules are the dependencies reported, in this order: the ones whose code
// parses, signs or verifies what stepseal's verdicts rest on.
var Modules = []string{
	"github.com/tektoncd/pipeline",
	"github.com/in-toto/in-toto-golang",
	"github.com/in-toto/attestation",
	"github.com/secure-systems-lab/go-securesystemslib",
	"github.com/sigstore/sigstore",
	"github.com/sigstore/cosign/v2",
	"github.com/google/go-containerregistry",
	"github.com/containers/ocicrypt",
	"github.com/transparency-dev/tessera",
	"github.com/theupdateframework/go-tuf/v2",
	"knative.dev/pkg",
	"k8s.io/client-go",
}

// Info is what a binary was built from.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commitTime,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform,omitempty"`
	// Modules maps module path to the version linked, for the Modules this
	// binary contains.
	Modules []Module `json:"modules,omitempty"`
}

// Module is one linked dependency.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// Replace is the module path or directory it was replaced by, if any.
	Replace string `json:"replace,omitempty"`
}

// Get reads the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: orDevel(Version)}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: Version, GoVersion: bi.GoVersion}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	info.Version = orDevel(info.Version)
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.CommitAt = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		info.Platform = goos + "/" + goarch
	}
	linked := make(map[string]*debug.Module, len(bi.Deps))
	for _, d := range bi.Deps {
		linked[d.Path] = d
	}
	for _, p := range Modules {
		d, ok := linked[p]
		if !ok {
			continue
		}
		m := Module{Path: p, Version: d.Version}
		if d.Replace != nil {
			m.Replace = strings.TrimSpace(d.Replace.Path + " " + d.Replace.Version)
		}
		info.Modules = append(info.Modules, m)
	}
	return info
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
