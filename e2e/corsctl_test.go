package e2e

// End-to-end tests of corsctl against the real corsd binary. Helpers here
// are prefixed with ctl so that they never clash with the other tests of
// this package.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ctlBuild builds corsd and corsctl into a temporary directory and returns
// their paths.
func ctlBuild(t *testing.T) (corsd, corsctl string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir := t.TempDir()
	var paths []string
	for _, pkg := range []string{"./cmd/corsd", "./cmd/corsctl"} {
		p := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", p, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1]
}

// ctlEnv is the environment without CORSD_* variables, so that only the
// flags and variables a test sets configure the binaries.
func ctlEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORSD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// ctlDaemon is a running corsd.
type ctlDaemon struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	logs   bytes.Buffer
	exited chan struct{}
}

// ctlStartCorsd starts corsd on 127.0.0.1:0 with a new database in a temp
// dir (and extra flags) and waits for its "grpc listening" log line.
func ctlStartCorsd(t *testing.T, bin string, extra ...string) *ctlDaemon {
	t.Helper()
	db := filepath.Join(t.TempDir(), "corsd.db")
	args := append([]string{"--listen", "127.0.0.1:0", "--http-listen", "", "--db", db, "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = ctlEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &ctlDaemon{cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start corsd: %v", err)
	}
	addrc := make(chan string, 1)
	go func() {
		defer close(d.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			d.mu.Lock()
			d.logs.Write(line)
			d.logs.WriteByte('\n')
			d.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "grpc listening" {
				select {
				case addrc <- rec.Addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() { d.stop() })
	select {
	case d.addr = <-addrc:
	case <-d.exited:
		t.Fatalf("corsd exited at start; logs:\n%s", d.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("corsd did not log its address within 30s; logs:\n%s", d.logText())
	}
	return d
}

func (d *ctlDaemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// stop terminates corsd gracefully (SIGTERM, then SIGKILL after 10s).
func (d *ctlDaemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctlRun runs corsctl against addr.
func ctlRun(t *testing.T, bin, addr string, args ...string) ctlResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = ctlEnv("CORSD_ADDR=" + addr)
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
	corsd, corsctl := ctlBuild(t)
	d := ctlStartCorsd(t, corsd)
	addr := d.addr
	file := ctlWriteFile(t, "policies.yaml", ctlPolicies)

	t.Run("apply creates, then changes nothing", func(t *testing.T) {
		out := ctlMust(t, corsctl, addr, "policies", "apply", "-f", file)
		if want := "policies/shop created (revision 1)\npolicies/docs created (revision 2)\n"; out != want {
			t.Errorf("first apply printed %q, want %q", out, want)
		}
		out = ctlMust(t, corsctl, addr, "policies", "apply", "-f", file)
		if want := "policies/shop unchanged (revision 1)\npolicies/docs unchanged (revision 2)\n"; out != want {
			t.Errorf("second apply printed %q, want %q", out, want)
		}
	})

	check := func(t *testing.T, origin string) string {
		t.Helper()
		return ctlMust(t, corsctl, addr, "check", "--policy", "shop", "--origin", origin, "--preflight", "--method", "PUT", "--request-headers", "content-type")
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
		out := ctlMust(t, corsctl, other.addr, "import", "-f", dump)
		if strings.Count(out, " created ") != 2 {
			t.Errorf("import into an empty corsd printed %q, want 2 created", out)
		}
		if out := ctlMust(t, corsctl, other.addr, "import", "-f", dump); strings.Count(out, " unchanged ") != 2 {
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
		if a, b := get(addr), get(other.addr); a != b {
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
		if got := ctlMust(t, corsctl, restored.addr, "export"); got != want {
			t.Errorf("export of the restored corsd:\n%s\nwant (revisions and times included):\n%s", got, want)
		}
		if got, want := ctlMust(t, corsctl, restored.addr, "changes"), ctlMust(t, corsctl, addr, "changes"); got != want {
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
		for _, field := range []string{"policy.origins[0].pattern: ", "policy.origins[1].allow_credentials: ", "policy.allowed_methods[0]: ", "policy.max_age: "} {
			if !strings.Contains(r.stderr, "\n  "+field) {
				t.Errorf("stderr lacks a line for %s:\n%s", field, r.stderr)
			}
		}
		if !strings.Contains(r.stderr, "(4 problems)") {
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
		down.stop()
		r := ctlRun(t, corsctl, down.addr, "--timeout", "3s", "policies", "list")
		if r.code != 1 || !strings.Contains(r.stderr, "Is corsd running at "+down.addr) || !strings.Contains(r.stderr, "make run") {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and a hint to start corsd", r.code, r.stderr)
		}
	})
}
