package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store/boltstore"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedClock stamps every write with the same time, so that golden output
// is stable.
func fixedClock() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC) }

// startCorsd serves a real corsd (server package, bbolt in a temp dir) on a
// loopback port and returns its address.
func startCorsd(t *testing.T, opts ...server.Option) string {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "corsd.db"), boltstore.WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st, append([]server.Option{server.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		gs.Stop()
		wg.Wait()
		_ = srv.Close()
		_ = st.Close()
	})
	return lis.Addr().String()
}

type result struct {
	stdout, stderr string
	code           int
}

// corsctl runs the CLI in-process with args.
func corsctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// golden compares what a command printed with testdata/NAME.golden, or
// rewrites the file with -update. Loopback addresses are replaced by ADDR.
func golden(t *testing.T, name string, args []string, r result) {
	t.Helper()
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if strings.ContainsAny(a, " *") {
			shown[i] = "'" + a + "'"
		}
	}
	got := fmt.Sprintf("$ corsctl %s\n--- exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(shown, " "), r.code, r.stdout, r.stderr)
	got = addrRE.ReplaceAllString(got, "ADDR")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/corsctl -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("corsctl %s: output mismatch with %s (-want +got)\n%s", strings.Join(args, " "), path, diff)
	}
}

// TestGolden drives one corsd through a session of commands, in order
// (each step sees the previous ones' writes), and compares every output
// with its golden file.
func TestGolden(t *testing.T) {
	addr := startCorsd(t)
	steps := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{name: "list-empty", args: []string{"policies", "list"}},
		{name: "apply-dry-run-create", args: []string{"policies", "apply", "--dry-run", "-f", "testdata/acme.yaml"}},
		{name: "apply-create", args: []string{"policies", "apply", "-f", "testdata/acme.yaml"}},
		{name: "apply-unchanged", args: []string{"policies", "apply", "-f", "testdata/acme.yaml"}},
		{name: "apply-dry-run-unchanged", args: []string{"policies", "apply", "--dry-run", "-f", "testdata/acme.yaml"}},
		{name: "apply-normalized-unchanged", args: []string{"policies", "apply", "-f", "testdata/acme-normalized-only.yaml"}},
		{name: "create-two", args: []string{"policies", "create", "-f", "testdata/more.yaml"}},
		{name: "list-table", args: []string{"policies", "list"}},
		{name: "list-json", args: []string{"policies", "list", "-o", "json"}},
		{name: "list-yaml", args: []string{"policies", "list", "-o", "yaml"}},
		{name: "get-table", args: []string{"policies", "get", "acme"}},
		{name: "get-json", args: []string{"policies", "get", "policies/acme", "-o", "json"}},
		{name: "get-yaml", args: []string{"policies", "get", "acme", "-o", "yaml"}},
		{name: "apply-dry-run-update", args: []string{"policies", "apply", "--dry-run", "-f", "testdata/acme-changed.yaml"}},
		{name: "apply-update", args: []string{"policies", "apply", "-f", "testdata/acme-changed.yaml"}},
		{name: "origins-add", args: []string{"origins", "add", "acme", "https://partner.example.net", "--credentials", "--description", "partner portal"}},
		{name: "origins-list-table", args: []string{"origins", "list", "acme"}},
		{name: "origins-list-json", args: []string{"origins", "list", "acme", "-o", "json"}},
		{name: "origins-remove", args: []string{"origins", "remove", "acme", "https://partner.example.net"}},
		{name: "check-preflight-table", args: []string{"check", "--policy", "acme", "--origin", "https://app.acme.example", "--preflight", "--method", "PUT", "--request-headers", "content-type,x-api-key"}},
		{name: "check-preflight-json", args: []string{"check", "--policy", "acme", "--origin", "https://app.acme.example", "--preflight", "--method", "PUT", "-o", "json"}},
		{name: "check-preflight-yaml", args: []string{"check", "--policy", "acme", "--origin", "https://app.acme.example", "--preflight", "--method", "PUT", "-o", "yaml"}},
		{name: "check-refused-table", args: []string{"check", "--policy", "acme", "--origin", "https://evil.example"}},
		{name: "check-header-refused-table", args: []string{"check", "--policy", "acme", "--origin", "https://app.acme.example", "--preflight", "--method", "PUT", "--request-headers", "x-secret"}},
		{name: "check-cross-origin-table", args: []string{"check", "--policy", "acme", "--origin", "https://evil.example", "--method", "POST", "--host", "api.acme.example", "--sec-fetch-site", "cross-site"}},
		{name: "check-by-host-table", args: []string{"check", "--host", "api.acme.example", "--origin", "http://localhost:5173"}},
		{name: "check-no-policy-table", args: []string{"check", "--host", "unknown.example", "--origin", "https://app.acme.example"}},
		{name: "changes-table", args: []string{"changes"}},
		{name: "changes-since-policy-table", args: []string{"changes", "--since", "2", "--policy", "acme"}},
		{name: "changes-json", args: []string{"changes", "--since", "4", "--limit", "1", "-o", "json"}},
		{name: "changes-yaml", args: []string{"changes", "--since", "4", "--limit", "1", "-o", "yaml"}},
		{name: "delete", args: []string{"policies", "delete", "docs"}},
		{name: "export", args: []string{"export"}},

		{name: "error-already-exists", args: []string{"policies", "create", "-f", "testdata/acme.yaml"}, wantCode: 1},
		{name: "error-not-found", args: []string{"policies", "get", "nope"}, wantCode: 1},
		{name: "error-invalid", args: []string{"policies", "apply", "-f", "testdata/invalid.yaml"}, wantCode: 1},
		{name: "error-invalid-dry-run", args: []string{"policies", "apply", "--dry-run", "-f", "testdata/invalid.yaml"}, wantCode: 1},
		{name: "error-stale-etag", args: []string{"policies", "delete", "acme", "--etag", "1"}, wantCode: 1},
		{name: "error-origin-not-found", args: []string{"origins", "remove", "acme", "https://never.example"}, wantCode: 1},
		{name: "error-bad-file", args: []string{"policies", "apply", "-f", "testdata/missing.yaml"}, wantCode: 1},
		{name: "usage-negative-since", args: []string{"changes", "--since", "-1"}, wantCode: 2},
		{name: "create-dry-run", args: []string{"policies", "create", "--dry-run", "-f", "testdata/acme-changed.yaml"}, wantCode: 1},
		{name: "update-dry-run", args: []string{"policies", "update", "--dry-run", "-f", "testdata/acme-changed.yaml"}},
		{name: "usage-unknown-command", args: []string{"polices", "list"}, wantCode: 2},
		{name: "usage-unknown-subcommand", args: []string{"policies", "lsit"}, wantCode: 2},
		{name: "usage-missing-arg", args: []string{"policies", "get"}, wantCode: 2},
		{name: "usage-unknown-flag", args: []string{"policies", "list", "--colour"}, wantCode: 2},
		{name: "usage-bad-output", args: []string{"policies", "list", "-o", "xml"}, wantCode: 2},
		{name: "usage-apply-without-file", args: []string{"policies", "apply"}, wantCode: 2},
		{name: "usage-bare", args: []string{}, wantCode: 2},
	}
	for _, s := range steps {
		args := append([]string{"--addr", addr}, s.args...)
		r := corsctl(t, args...)
		if r.code != s.wantCode {
			t.Errorf("%s: corsctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", s.name, strings.Join(s.args, " "), r.code, s.wantCode, r.stdout, r.stderr)
		}
		golden(t, s.name, s.args, r)
	}
}

// TestErrorsWithoutServer covers the errors about reaching corsd.
func TestErrorsWithoutServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()
	withTokens := startCorsd(t, server.WithTokens(server.Token{Name: "ci", Token: "0123456789abcdef0123", Scopes: []server.Scope{server.ScopeRead}}))

	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
	}{
		{name: "error-unavailable", args: []string{"--addr", closed, "--timeout", "2s", "policies", "list"}, wantCode: 1},
		{name: "error-unauthenticated", args: []string{"--addr", withTokens, "policies", "list"}, wantCode: 1},
		{name: "error-permission-denied", args: []string{"--addr", withTokens, "--token", "0123456789abcdef0123", "origins", "add", "acme", "https://x.example"}, wantCode: 1},
		{name: "error-token-over-plaintext", args: []string{"--addr", "corsd.example.com:8443", "--plaintext", "--token", "0123456789abcdef0123", "policies", "list"}, wantCode: 1},
		{name: "env-token", args: []string{"policies", "list"}, env: map[string]string{"CORSD_ADDR": withTokens, "CORSD_TOKEN": "0123456789abcdef0123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := corsctl(t, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			golden(t, tt.name, tt.args, r)
		})
	}
}

// TestApplyIsIdempotent checks that a second apply writes nothing: no new
// revision, no new change.
func TestApplyIsIdempotent(t *testing.T) {
	addr := startCorsd(t)
	for i := range 2 {
		if r := corsctl(t, "--addr", addr, "policies", "apply", "-f", "testdata/acme.yaml"); r.code != 0 {
			t.Fatalf("apply #%d: exit %d: %s", i+1, r.code, r.stderr)
		}
	}
	r := corsctl(t, "--addr", addr, "changes", "-o", "json")
	if n := strings.Count(r.stdout, `"kind"`); n != 1 {
		t.Errorf("after two applies of one policy the change log holds %d changes, want 1:\n%s", n, r.stdout)
	}
}

// TestExportImportRoundTrip exports from one corsd, imports into another,
// and checks that both then export the same policies; a second import
// changes nothing.
func TestExportImportRoundTrip(t *testing.T) {
	src := startCorsd(t)
	for _, f := range []string{"testdata/acme.yaml", "testdata/more.yaml"} {
		if r := corsctl(t, "--addr", src, "policies", "apply", "-f", f); r.code != 0 {
			t.Fatalf("apply %s: %s", f, r.stderr)
		}
	}
	exported := corsctl(t, "--addr", src, "export")
	if exported.code != 0 {
		t.Fatalf("export: %s", exported.stderr)
	}
	backup := filepath.Join(t.TempDir(), "export.yaml")
	if err := os.WriteFile(backup, []byte(exported.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := startCorsd(t)
	r := corsctl(t, "--addr", dst, "import", "-f", backup)
	if r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	if want := "policies/acme created (revision 1)\npolicies/billing created (revision 2)\npolicies/docs created (revision 3)\n"; r.stdout != want {
		t.Errorf("import printed %q, want %q", r.stdout, want)
	}
	again := corsctl(t, "--addr", dst, "import", "-f", backup)
	if strings.Count(again.stdout, "unchanged") != 3 {
		t.Errorf("second import: %q, want 3 unchanged", again.stdout)
	}
	exp1 := corsctl(t, "--addr", src, "export").stdout
	exp2 := corsctl(t, "--addr", dst, "export").stdout
	if diff := cmp.Diff(exp1, exp2); diff != "" {
		t.Errorf("export after import differs from the source's export (-src +dst)\n%s", diff)
	}
}

// TestBackup checks that backup writes a verified copy of the database
// that holds the policies, readable by its owner only.
func TestBackup(t *testing.T) {
	addr := startCorsd(t)
	if r := corsctl(t, "--addr", addr, "policies", "apply", "-f", "testdata/more.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r.stderr)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "corsd-backup.db")
	r := corsctl(t, "--addr", addr, "backup", path)
	if r.code != 0 || !strings.Contains(r.stderr, "corsd --restore-from "+path) {
		t.Fatalf("backup: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := verifyBackup(path); err != nil {
		t.Fatalf("verifyBackup(backup): %v", err)
	}
	// Restore it through the Store interface into a new store.
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "restored.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	bf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bf.Close() }()
	if err := st.Restore(t.Context(), bf); err != nil {
		t.Fatalf("Restore(backup): %v", err)
	}
	page, err := st.List(t.Context(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range page.Policies {
		names = append(names, p.GetName())
	}
	if diff := cmp.Diff([]string{"policies/billing", "policies/docs"}, names); diff != "" {
		t.Errorf("policies in the backup mismatch (-want +got)\n%s", diff)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("backup left %d files in its directory, want 1", len(entries))
	}

	// A failed backup (corsd unreachable) writes nothing.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()
	failed := filepath.Join(dir, "never.db")
	if r := corsctl(t, "--addr", closed, "backup", failed); r.code != 1 {
		t.Errorf("backup from a closed port: exit %d, want 1", r.code)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("failed backup left %s: %v", failed, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("failed backup left temporary files: %d entries", len(entries))
	}
}

func TestParsePolicies(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantNames []string
		wantErr   string
	}{
		{name: "one yaml policy", in: "name: acme\n", wantNames: []string{"policies/acme"}},
		{name: "yaml list", in: "- name: a\n- name: policies/b\n", wantNames: []string{"policies/a", "policies/b"}},
		{name: "json object", in: `{"name":"policies/a","allowedMethods":["PUT"]}`, wantNames: []string{"policies/a"}},
		{name: "list response shape", in: `{"policies":[{"name":"a"},{"name":"b"}],"next_page_token":""}`, wantNames: []string{"policies/a", "policies/b"}},
		{name: "documents", in: "name: a\n---\nname: b\n---\n", wantNames: []string{"policies/a", "policies/b"}},
		{name: "no name", in: "description: x\n", wantErr: "policy #1 has no name"},
		{name: "unknown field", in: "name: a\ncolour: red\n", wantErr: "policy #1"},
		{name: "duplicate", in: "- name: a\n- name: policies/a\n", wantErr: "already appears as policy #1"},
		{name: "scalar", in: "hello\n", wantErr: "want a policy"},
		{name: "empty", in: "", wantErr: "no policy found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := parsePolicies([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parsePolicies(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePolicies(%q): %v", tt.in, err)
			}
			var names []string
			for _, p := range ps {
				names = append(names, p.GetName())
			}
			if diff := cmp.Diff(tt.wantNames, names); diff != "" {
				t.Errorf("parsePolicies(%q) names mismatch (-want +got)\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzParsePolicies: policy files are untrusted input. The parser never
// panics, and what it accepts survives a JSON round trip unchanged.
func FuzzParsePolicies(f *testing.F) {
	for _, name := range []string{"acme.yaml", "more.yaml", "invalid.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`[{"name":"a"},{"name":"b"}]`))
	f.Add([]byte("---\n---\n- name: x\n"))
	f.Add([]byte(`{"policies":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := parsePolicies(data)
		if err != nil {
			return
		}
		if len(ps) == 0 {
			t.Fatal("no error and no policy")
		}
		j, err := marshalMessages(true, policiesAsMessages(ps)...)
		if err != nil {
			t.Fatalf("marshal accepted policies: %v", err)
		}
		again, err := parsePolicies(j)
		if err != nil {
			t.Fatalf("parse of re-marshaled policies: %v\n%s", err, j)
		}
		j2, err := marshalMessages(true, policiesAsMessages(again)...)
		if err != nil || !bytes.Equal(j, j2) {
			t.Fatalf("round trip changed the policies:\n%s\n%s", j, j2)
		}
	})
}

// TestNewRootCmd drives the command tree directly, as an embedding program
// would.
func TestNewRootCmd(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantOut string
	}{
		{name: "help", args: []string{"--help"}, wantOut: "Exit status: 0 on success"},
		{name: "subcommand help", args: []string{"policies", "apply", "--help"}, wantOut: "leaves the equal ones alone"},
		{name: "backup help says how to restore", args: []string{"backup", "--help"}, wantOut: "corsd --restore-from FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRootCmd(&out, &errOut)
			root.SetArgs(tt.args)
			if err := root.ExecuteContext(t.Context()); err != nil {
				t.Fatalf("Execute(%q): %v", tt.args, err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("Execute(%q) printed:\n%s\nwant it to contain %q", tt.args, out.String(), tt.wantOut)
			}
		})
	}
}
