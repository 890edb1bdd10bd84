package corsdtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ModulePath is the path of the module whose root ModuleRoot looks for.
const ModulePath = "github.com/corsd/corsd"

// ModuleRoot returns the directory of corsd's go.mod, searched from the
// working directory upwards. A go.mod of another module (a nested example
// or tool module) is passed over.
func ModuleRoot() (string, error) {
	start, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("corsdtest: %w", err)
	}
	for dir := start; ; {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod")) //nolint:gosec // G304: reading go.mod files above the working directory is the point
		if err == nil && modulePath(b) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("corsdtest: no go.mod of %s in %s or above: run from inside the corsd module", ModulePath, start)
		}
		dir = parent
	}
}

// modulePath returns the path of the module directive of a go.mod file, or
// "" when it has none.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rest, _, _ = strings.Cut(rest, "//")
		p := strings.TrimSpace(rest)
		if unq, err := strconv.Unquote(p); err == nil {
			p = unq
		}
		return p
	}
	return ""
}

// Tool returns the path of the executable name: root/bin/name (where make
// tools installs the pinned versions) when it is there, else name on PATH.
func Tool(root, name string) (string, error) {
	bin := filepath.Join(root, "bin")
	if p := filepath.Join(bin, name); isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("corsdtest: %s not found in %s or on PATH: run make tools", name, bin)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Build runs go build -o out pkg in the module at root; pkg is a package
// path relative to root such as ./cmd/corsd. ctx bounds the build. The
// error carries the compiler's output.
func Build(ctx context.Context, root, pkg, out string) error {
	if pkg == "" || out == "" {
		return errors.New("corsdtest: Build needs a package and an output path")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg) //nolint:gosec // G204: building the package it is given is the harness's job
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("corsdtest: go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
