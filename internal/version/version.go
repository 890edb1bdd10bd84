// Package version reports what a corsd binary was built from: the module
// version and the VCS revision that the go command records in the build
// info (runtime/debug). It imports nothing of ours.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what a binary was built from. The zero value means "unknown".
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0, a
	// pseudo-version derived from the VCS, or "(devel)".
	Version string `json:"version"`
	// Revision is the VCS commit, "" when the build recorded none.
	Revision string `json:"revision,omitempty"`
	// Time is the commit time (RFC 3339), "" when unknown.
	Time string `json:"time,omitempty"`
	// Modified reports a build from a work tree with uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the toolchain that built the binary.
	Go string `json:"go"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns the Info of the running binary.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts an Info from bi.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: bi.Main.Version, Go: bi.GoVersion}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos == "" || goarch == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	info.Platform = goos + "/" + goarch
	return info
}

// String renders info on one line after the program's name:
// "corsd v1.2.0 (revision 0123abc…, 2026-12-06T08:00:00Z) go1.26.0 linux/amd64".
func (info Info) String() string {
	s := info.Version
	if info.Revision != "" {
		rev := info.Revision
		if info.Time != "" {
			rev += ", " + info.Time
		}
		if info.Modified {
			rev += ", modified"
		}
		s += " (revision " + rev + ")"
	}
	return fmt.Sprintf("%s %s %s", s, info.Go, info.Platform)
}
