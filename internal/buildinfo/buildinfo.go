// Package buildinfo says which build of p2pd is running: the version and
// VCS revision Go stamps into every binary, or those the Makefile sets at
// link time (a build from a source tree without .git, as in an image,
// has no VCS stamp):
//
//	go build -ldflags "-X github.com/p2pd/p2pd/internal/buildinfo.version=$(git describe --tags --always --dirty)
//	  -X github.com/p2pd/p2pd/internal/buildinfo.revision=$(git rev-parse HEAD)"
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set by the linker (-X) only; empty means "ask the build info".
var (
	version  string
	revision string
)

// Info is one build of p2pd.
type Info struct {
	// Version is the release (git describe), or Go's version of the main
	// module: a pseudo-version, or "(devel)" with no VCS stamp.
	Version string
	// Revision is the VCS commit, with "-dirty" when the tree had
	// uncommitted changes; empty when unknown.
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns this binary's build.
func Read() Info {
	i := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i.orUnknown()
	}
	if i.Version == "" {
		i.Version = bi.Main.Version
	}
	if i.Revision == "" {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if i.Revision != "" && modified {
			i.Revision += "-dirty"
		}
	}
	return i.orUnknown()
}

func (i Info) orUnknown() Info {
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}

// String is the build as --version prints it.
func (i Info) String() string {
	return i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}

// Collector exports p2pd_build_info{version,revision,goversion} = 1, so a
// dashboard can count the builds running during a rolling upgrade.
func Collector() prometheus.Collector {
	i := Read()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "p2pd_build_info",
		Help: "The running build: always 1, labelled with its version, VCS revision and Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(i.Version, i.Revision, i.GoVersion).Set(1)
	return g
}
