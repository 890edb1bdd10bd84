package e2e

// End-to-end tests of corsctl against the real corsd binary. Helpers here
// are prefixed with ctl so that they never clash with the other tests of
// this package.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corsd/corsd/internal/corsdtest"
)

// ctlStartCorsd starts corsd with a new database in a temp dir (and extra
// flags) and waits until it is ready. Cleanup stops it if the test did not.
func ctlStartCorsd(t *testing.T, bin string, extra ...string) *corsdtest.Daemon {
	t.Helper()
	db := filepath.Join(t.TempDir(), "corsd.db")
	return corsdtest.MustStart(t, bin, append([]string{"--db", db}, extra...)...)
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctlRun runs corsctl against addr.
func ctlRun(t *testing.T, bin, addr string, args ...string) ctlResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = corsdtest.Env("CORSD_ADDR=" + addr)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("corsctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return ctlResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// ctlMust runs corsctl and requires exit code 0.
func ctlMust(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	r := ctlRun(t, bin, addr, args...)
	if r.code != 0 {
		t.Fatalf("corsctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func ctlWriteFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const ctlPolicies = `
- name: policies/shop
  description: the shop API
  origins:
    - pattern: https://shop.example.com
      allow_credentials: true
    - pattern: https://*.preview.shop.example.com
  allowed_methods: [PUT, DELETE]
  allowed_request_headers: [Content-Type]
  max_age: 300s
  hosts: [api.shop.example.com]
- name: policies/docs
  mode: MODE_REPORT_ONLY
  origins:
    - pattern: "*"
`

func TestCorsctl(t *testing.T) {
	corsd, corsctl := corsdtest.MustBuild(t, "./cmd/corsd"), corsdtest.MustBuild(t, "./cmd/corsctl")
	d := ctlStartCorsd(t, corsd)
	addr := d.GRPCAddr
	file := ctlWriteFile(t, "policies.yaml", ctlPolicies)

	t.Run("apply creates, then changes nothing", func(t *testing.T) {
		out := ctlMust(t, corsctl, addr, "policies", "apply", "-f", file)
		if want := "policies/shop created (revision 1)\n    + origin https://shop.example.com (credentials)\n    + origin https://*.preview.shop.example.com\npolicies/docs created (revision 2)\n    + origin *\n"; out != want {
			t.Errorf("first apply printed %q, want %q", out, want)
		}
		out = ctlMust(t, corsctl, addr, "policies", "apply", "-f", file)
		if want := "policies/shop unchanged (revision 1)\npolicies/docs unchanged (revision 2)\n"; out != want {
			t.Errorf("second apply printed %q, want %q", out, want)
		}
	})

	// check exits 0 when the request is allowed and 1 when refused.
	check := func(t *testing.T, origin string) string {
		t.Helper()
		r := ctlRun(t, corsctl, addr, "check", "--policy", "shop", "--origin", origin, "--preflight", "--method", "PUT", "--request-headers", "content-type")
		if allowed := strings.Contains(r.stdout, "Decision:      allowed"); (r.code == 0) != allowed || r.code > 1 {
			t.Errorf("check %s: exit %d with:\n%s%s", origin, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	t.Run("origins add and remove change decisions", func(t *testing.T) {
		const o = "https://partner.example.net"
		if out := check(t, o); !strings.Contains(out, "Decision:      refused") || !strings.Contains(out, "ORIGIN_NOT_ALLOWED") {
			t.Fatalf("before add, check printed:\n%s", out)
		}
		ctlMust(t, corsctl, addr, "origins", "add", "shop", o, "--description", "partner")
		out := check(t, o)
		for _, want := range []string{"Decision:      allowed", "Reply status:  204", "Access-Control-Allow-Origin: " + o, "Access-Control-Allow-Methods: PUT, DELETE", "Access-Control-Max-Age: 300"} {
			if !strings.Contains(out, want) {
				t.Errorf("after add, check output lacks %q:\n%s", want, out)
			}
		}
		if list := ctlMust(t, corsctl, addr, "origins", "list", "shop"); !strings.Contains(list, o) {
			t.Errorf("origins list lacks %s:\n%s", o, list)
		}
		ctlMust(t, corsctl, addr, "origins", "remove", "shop", o)
		if out := check(t, o); !strings.Contains(out, "Decision:      refused") {
			t.Errorf("after remove, check printed:\n%s", out)
		}
	})

	t.Run("changes", func(t *testing.T) {
		var changes []struct {
			Revision string `json:"revision"`
			Actor    string `json:"actor"`
			Kind     string `json:"kind"`
			Name     string `json:"name"`
		}
		out := ctlMust(t, corsctl, addr, "changes", "--policy", "shop", "-o", "json")
		if err := json.Unmarshal([]byte(out), &changes); err != nil {
			t.Fatalf("changes -o json: %v\n%s", err, out)
		}
		var kinds []string
		for _, c := range changes {
			kinds = append(kinds, c.Revision+" "+c.Kind+" "+c.Actor)
		}
		want := []string{"1 CHANGE_KIND_CREATE local", "3 CHANGE_KIND_UPDATE local", "4 CHANGE_KIND_UPDATE local"}
		if strings.Join(kinds, "|") != strings.Join(want, "|") {
			t.Errorf("changes of policies/shop = %q, want %q", kinds, want)
		}
		table := ctlMust(t, corsctl, addr, "changes", "--since", "2")
		if lines := strings.Count(table, "\n"); lines != 3 { // header + revisions 3 and 4
			t.Errorf("changes --since 2 printed %d lines, want 3:\n%s", lines, table)
		}
	})

	t.Run("export and import round trip", func(t *testing.T) {
		exported := ctlMust(t, corsctl, addr, "export")
		dump := ctlWriteFile(t, "export.yaml", exported)
		other := ctlStartCorsd(t, corsd)
		out := ctlMust(t, corsctl, other.GRPCAddr, "import", "-f", dump)
		if strings.Count(out, " created ") != 2 {
			t.Errorf("import into an empty corsd printed %q, want 2 created", out)
		}
		if out := ctlMust(t, corsctl, other.GRPCAddr, "import", "-f", dump); strings.Count(out, " unchanged ") != 2 {
			t.Errorf("second import printed %q, want 2 unchanged", out)
		}
		// Same policies, field for field (output-only fields differ: the
		// second corsd numbered its own revisions).
		get := func(a string) string {
			out := ctlMust(t, corsctl, a, "policies", "get", "shop", "-o", "json")
			var p map[string]any
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"revision", "etag", "create_time", "update_time"} {
				delete(p, k)
			}
			b, _ := json.Marshal(p)
			return string(b)
		}
		if a, b := get(addr), get(other.GRPCAddr); a != b {
			t.Errorf("policies/shop after the round trip:\n%s\nwant:\n%s", b, a)
		}
	})

	t.Run("backup and restore", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "backup.db")
		r := ctlRun(t, corsctl, addr, "backup", path)
		if r.code != 0 {
			t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("backup file: %v (want mode 0600)", err)
		}
		restored := ctlStartCorsd(t, corsd, "--restore-from", path)
		want := ctlMust(t, corsctl, addr, "export")
		if got := ctlMust(t, corsctl, restored.GRPCAddr, "export"); got != want {
			t.Errorf("export of the restored corsd:\n%s\nwant (revisions and times included):\n%s", got, want)
		}
		if got, want := ctlMust(t, corsctl, restored.GRPCAddr, "changes"), ctlMust(t, corsctl, addr, "changes"); got != want {
			t.Errorf("change log of the restored corsd:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("invalid policy file lists every violation", func(t *testing.T) {
		bad := ctlWriteFile(t, "bad.yaml", `
name: policies/bad
origins:
  - pattern: https://app.example.com/path
  - pattern: "*"
    allow_credentials: true
allowed_methods: [TRACE]
max_age: 90000s
`)
		r := ctlRun(t, corsctl, addr, "policies", "apply", "-f", bad)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		for _, field := range []string{"origins[0].pattern: ", "origins[1].allow_credentials: ", "allowed_methods[0]: ", "max_age: "} {
			if !strings.Contains(r.stderr, "\n    "+field) {
				t.Errorf("stderr lacks a line for %s:\n%s", field, r.stderr)
			}
		}
		if !strings.Contains(r.stderr, "4 problems") {
			t.Errorf("stderr does not count 4 problems:\n%s", r.stderr)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"policies", "get"},
			{"polices", "list"},
			{"policies", "list", "--no-such-flag"},
			{"check", "--policy", "shop", "-o", "csv"},
		} {
			r := ctlRun(t, corsctl, addr, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("corsctl %s: exit %d, want 2 with a usage hint; stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
		}
	})

	t.Run("corsd down exits 1 and says how to start it", func(t *testing.T) {
		down := ctlStartCorsd(t, corsd)
		_ = down.Stop(corsdtest.StopTimeout) // how it exits is not what this case tests
		r := ctlRun(t, corsctl, down.GRPCAddr, "--timeout", "3s", "policies", "list")
		if r.code != 1 || !strings.Contains(r.stderr, "Is corsd running at "+down.GRPCAddr) || !strings.Contains(r.stderr, "make run") {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and a hint to start corsd", r.code, r.stderr)
		}
	})
}
