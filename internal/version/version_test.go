package version

import (
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name     string
		bi       debug.BuildInfo
		want     Info
		wantLine string
	}{
		{
			name: "tagged release",
			bi: debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/corsd/corsd", Version: "v1.2.0"}, Settings: []debug.BuildSetting{
				{Key: "GOOS", Value: "darwin"}, {Key: "GOARCH", Value: "arm64"},
				{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-12-06T08:00:00Z"}, {Key: "vcs.modified", Value: "false"},
			}},
			want:     Info{Version: "v1.2.0", Revision: "0123456789abcdef0123456789abcdef01234567", Time: "2026-12-06T08:00:00Z", Go: "go1.26.0", Platform: "darwin/arm64"},
			wantLine: "v1.2.0 (revision 0123456789abcdef0123456789abcdef01234567, 2026-12-06T08:00:00Z) go1.26.0 darwin/arm64",
		},
		{
			name: "dirty work tree",
			bi: debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20261206080000-0123456789ab+dirty"}, Settings: []debug.BuildSetting{
				{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
				{Key: "vcs.revision", Value: "0123456789ab"}, {Key: "vcs.modified", Value: "true"},
			}},
			want:     Info{Version: "v0.0.0-20261206080000-0123456789ab+dirty", Revision: "0123456789ab", Modified: true, Go: "go1.26.0", Platform: "linux/amd64"},
			wantLine: "v0.0.0-20261206080000-0123456789ab+dirty (revision 0123456789ab, modified) go1.26.0 linux/amd64",
		},
		{
			name:     "no vcs",
			bi:       debug.BuildInfo{GoVersion: "go1.26.0", Settings: []debug.BuildSetting{{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"}}},
			want:     Info{Version: "(devel)", Go: "go1.26.0", Platform: "linux/arm64"},
			wantLine: "(devel) go1.26.0 linux/arm64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromBuildInfo(&tt.bi)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FromBuildInfo mismatch (-want +got)\n%s", diff)
			}
			if line := got.String(); line != tt.wantLine {
				t.Errorf("String() = %q, want %q", line, tt.wantLine)
			}
		})
	}
}

func TestGet(t *testing.T) {
	if got := Get(); got.Version == "" || got.Go == "" || got.Platform == "" {
		t.Errorf("Get() = %+v, want version, go and platform set", got)
	}
}
