package corsdtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModulePath(t *testing.T) {
	tests := []struct {
		name  string
		gomod string
		want  string
	}{
		{name: "plain", gomod: "module github.com/corsd/corsd\n\ngo 1.26.0\n", want: ModulePath},
		{name: "after a comment", gomod: "// corsd\nmodule github.com/corsd/corsd // the daemon\n", want: ModulePath},
		{name: "quoted", gomod: "module \"github.com/corsd/corsd\"\n", want: ModulePath},
		{name: "longer path is another module", gomod: "module github.com/corsd/corsdx\n", want: "github.com/corsd/corsdx"},
		{name: "no directive", gomod: "go 1.26.0\n", want: ""},
		{name: "modulex is no directive", gomod: "modulex a\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := modulePath([]byte(tt.gomod)); got != tt.want {
				t.Errorf("modulePath(%q) = %q, want %q", tt.gomod, got, tt.want)
			}
		})
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if filepath.Join(root, "internal", "corsdtest") != wd {
		t.Errorf("ModuleRoot() = %s, want the directory two above %s", root, wd)
	}
	t.Chdir(t.TempDir())
	if _, err := ModuleRoot(); err == nil || !strings.Contains(err.Error(), "run from inside the corsd module") {
		t.Errorf("ModuleRoot() outside the module: %v, want an error that says where to run", err)
	}
}

func TestTool(t *testing.T) {
	root, pathDir := t.TempDir(), t.TempDir()
	write := func(p string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "bin", "pinned"), 0o755)
	write(filepath.Join(pathDir, "pinned"), 0o755)
	write(filepath.Join(root, "bin", "notexec"), 0o644)
	write(filepath.Join(pathDir, "notexec"), 0o755)
	write(filepath.Join(pathDir, "onpath"), 0o755)
	t.Setenv("PATH", pathDir)
	tests := []struct {
		name    string
		tool    string
		want    string
		wantErr string
	}{
		{name: "bin wins over PATH", tool: "pinned", want: filepath.Join(root, "bin", "pinned")},
		{name: "not executable in bin", tool: "notexec", want: filepath.Join(pathDir, "notexec")},
		{name: "PATH only", tool: "onpath", want: filepath.Join(pathDir, "onpath")},
		{name: "missing", tool: "missing", wantErr: "run make tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Tool(root, tt.tool)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Tool(%q) = %q, %v; want an error containing %q", tt.tool, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Tool(%q) = %q, %v; want %q", tt.tool, got, err, tt.want)
			}
		})
	}
}

func TestBuildError(t *testing.T) {
	root := MustModuleRoot(t)
	err := Build(context.Background(), root, "./no/such/package", filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(err.Error(), "go build ./no/such/package") {
		t.Errorf("Build of a missing package: %v, want an error naming it", err)
	}
}
