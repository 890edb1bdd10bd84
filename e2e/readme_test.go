package e2e

// The README's quick start, run verbatim. Helpers are prefixed with readme.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

// The addresses the README documents; the quick start runs on them.
const (
	readmeGRPCAddr = "127.0.0.1:8443"
	readmeHTTPAddr = "127.0.0.1:9090"
)

// readmeBlocks returns the ```sh blocks of the README section whose heading
// is heading, in order.
func readmeBlocks(readme []byte, heading string) ([]string, error) {
	var (
		blocks  []string
		in      bool // inside the section
		fence   bool // inside a fenced block
		isShell bool
		cur     strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case fence && strings.HasPrefix(line, "```"):
			fence = false
			if in && isShell {
				blocks = append(blocks, cur.String())
			}
			cur.Reset()
		case fence:
			cur.WriteString(line + "\n")
		case strings.HasPrefix(line, "```"):
			fence, isShell = true, strings.TrimSpace(strings.TrimPrefix(line, "```")) == "sh"
		case strings.HasPrefix(line, "## "):
			in = line == "## "+heading
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no ```sh block under %q", "## "+heading)
	}
	return blocks, nil
}

// readmeRunArgs returns the arguments that `make run` passes to corsd, read
// from a dry run of the Makefile with BIN set to bin, and checks that the
// target first installs what the quick start uses into BIN.
func readmeRunArgs(t *testing.T, root, bin string) []string {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-n", "run", "BIN="+bin)
	cmd.Dir = root
	// Under make test, the outer make's flags (a jobserver, -k) must not
	// reach this dry run.
	for _, kv := range corsdtest.Env() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, want := range []string{
		"go install github.com/fullstorydev/grpcurl/cmd/grpcurl@",
		"go build -o " + bin + "/corsctl ./cmd/corsctl",
		"go build -o " + bin + "/corsd ./cmd/corsd",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make run does not %q (the quick start needs it on the PATH it sets):\n%s", want, out)
		}
	}
	last := strings.Fields(lines[len(lines)-1])
	if len(last) == 0 || last[0] != bin+"/corsd" {
		t.Fatalf("make run does not end by running %s/corsd:\n%s", bin, out)
	}
	return last[1:]
}

// TestReadmeQuickStart runs the README's quick start as a new user would:
// `make run` in one terminal (the first block), every other block of the
// section in another, verbatim and in order, with bash. The tree is the
// repository's, with bin/ holding the freshly built corsd and corsctl and
// the pinned grpcurl, as `make run` leaves it.
func TestReadmeQuickStart(t *testing.T) {
	root := corsdtest.MustModuleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(readme, "Quick start")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(blocks[0]); got != "make run" {
		t.Fatalf("the quick start's first block is %q; the test starts corsd as `make run` does and runs the others", got)
	}
	if len(blocks) < 2 {
		t.Fatal("the quick start has no block to run against corsd")
	}
	for _, addr := range []string{readmeGRPCAddr, readmeHTTPAddr} {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the README's quick start runs on %s, which is in use (%v): stop what holds it (a `make run`?) and run the test again", addr, err)
		}
		_ = lis.Close()
	}

	// A work tree like the repository's after `make run`.
	work := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "bin" || name == ".git" || strings.HasSuffix(name, ".db") {
			continue
		}
		if err := os.Symlink(filepath.Join(root, name), filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(work, "bin")
	if err := os.Mkdir(bin, 0o750); err != nil {
		t.Fatal(err)
	}
	args := readmeRunArgs(t, root, bin)
	ctx, cancel := context.WithTimeout(t.Context(), corsdtest.BuildTimeout)
	defer cancel()
	for _, pkg := range []string{"./cmd/corsd", "./cmd/corsctl"} {
		if err := corsdtest.Build(ctx, root, pkg, filepath.Join(bin, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(corsdtest.MustTool(t, root, "grpcurl"), filepath.Join(bin, "grpcurl")); err != nil {
		t.Fatal(err)
	}

	// Terminal 1: corsd as `make run` starts it, in the work tree (its
	// --db is relative).
	t.Chdir(work)
	d := corsdtest.MustStart(t, filepath.Join(bin, "corsd"), args...)
	if d.GRPCAddr != readmeGRPCAddr || d.HTTPAddr != readmeHTTPAddr {
		t.Fatalf("corsd listens on %s and %s, want the README's %s and %s", d.GRPCAddr, d.HTTPAddr, readmeGRPCAddr, readmeHTTPAddr)
	}

	// Terminal 2: the other blocks, verbatim, in order, in one shell (as a
	// person pastes them), stopping at the first failing command.
	script := "set -euo pipefail\n" + strings.Join(blocks[1:], "\n")
	sctx, scancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer scancel()
	sh := exec.CommandContext(sctx, "bash", "-x", "-c", script)
	sh.Dir = work
	sh.Env = corsdtest.Env()
	var out, trace bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &trace
	if err := sh.Run(); err != nil {
		t.Fatalf("the README's quick start failed: %v\nscript:\n%s\nstdout:\n%s\ntrace (bash -x) and stderr:\n%s\ncorsd's log:\n%s", err, script, out.String(), trace.String(), d.Logs())
	}
	t.Logf("quick start output:\n%s", out.String())

	// What the blocks did is visible: the policy they applied exists and the
	// CLI and grpcurl both reached corsd.
	for _, want := range []string{"corsctl ", "policies/acme", "Decision:      allowed", "refused (exit status 1)", "policies/docs", `"allowed": true`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the quick start's output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReadmeBlocks(t *testing.T) {
	md := "# x\n```sh\nbefore\n```\n## Quick start\ntext\n```sh\nmake run\n```\n```console\n$ not run\n```\n```sh\na\nb\n```\n## Next\n```sh\nafter\n```\n"
	got, err := readmeBlocks([]byte(md), "Quick start")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"make run\n", "a\nb\n"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("readmeBlocks = %q, want %q", got, want)
	}
	if _, err := readmeBlocks([]byte(md), "Missing"); err == nil {
		t.Error("readmeBlocks of a missing section: no error")
	}
}
