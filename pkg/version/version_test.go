package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/stepseal/stepseal", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/tektoncd/pipeline", Version: "v1.15.1"},
			{Path: "github.com/in-toto/in-toto-golang", Version: "v0.11.0"},
			{Path: "github.com/google/go-containerregistry", Version: "v0.22.1",
				Replace: &debug.Module{Path: "../ggcr"}},
			{Path: "example.com/unrelated", Version: "v9.9.9"},
		},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "52b1c07"},
			{Key: "vcs.time", Value: "2026-12-02T22:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "amd64"},
		},
	}
	got := fromBuildInfo(bi)
	if got.Version != "(devel)" || got.Commit != "52b1c07" || !got.Modified || got.GoVersion != "go1.26.8" || got.Platform != "linux/amd64" || got.CommitAt != "2026-12-02T22:00:00Z" {
		t.Fatalf("info = %+v", got)
	}
	want := []Module{
		{Path: "github.com/tektoncd/pipeline", Version: "v1.15.1"},
		{Path: "github.com/in-toto/in-toto-golang", Version: "v0.11.0"},
		{Path: "github.com/google/go-containerregistry", Version: "v0.22.1", Replace: "../ggcr"},
	}
	if len(got.Modules) != len(want) {
		t.Fatalf("modules = %+v, want %+v", got.Modules, want)
	}
	for i := range want {
		if got.Modules[i] != want[i] {
			t.Errorf("module %d = %+v, want %+v", i, got.Modules[i], want[i])
		}
	}
}

func TestVersionOverride(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	if got := fromBuildInfo(bi); got.Version != "v1.2.3" {
		t.Fatalf("version = %q, want the -X override", got.Version)
	}
	Version = ""
	bi.Main.Version = ""
	if got := fromBuildInfo(bi); got.Version != "(devel)" {
		t.Fatalf("version = %q, want (devel) for an empty one", got.Version)
	}
}
