package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// grpcurlPath finds grpcurl in the repository's bin/ or on PATH.
func grpcurlPath(t *testing.T, root string) string {
	t.Helper()
	if p := filepath.Join(root, "bin", "grpcurl"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	t.Fatalf("grpcurl not found in %s/bin or on PATH: run make tools", root)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// buildCorsd builds the daemon into a temporary directory.
func buildCorsd(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corsd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/corsd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/corsd: %v\n%s", err, out)
	}
	return bin
}

// logLines collects a process's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logLines) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		ok := json.Unmarshal(sc.Bytes(), &m) == nil
		l.mu.Lock()
		l.raw.Write(sc.Bytes())
		l.raw.WriteByte('\n')
		if ok {
			l.lines = append(l.lines, m)
		}
		l.mu.Unlock()
	}
}

func (l *logLines) find(msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.lines {
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// daemon is a running corsd process.
type daemon struct {
	cmd    *exec.Cmd
	logs   *logLines
	addr   string
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startCorsd starts the binary and waits until it is ready. The process is
// killed at cleanup if it still runs.
func startCorsd(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CORSD_TOKENS=") // only the flags configure tokens
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logs: &logLines{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start corsd: %v", err)
	}
	go func() {
		d.logs.consume(stderr)
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = cmd.Process.Kill()
			<-d.exited
		}
	})
	deadline := time.After(30 * time.Second)
	for d.logs.find("ready") == nil {
		select {
		case <-d.exited:
			t.Fatalf("corsd exited before it was ready: %v\nlogs:\n%s", d.err, d.logs)
		case <-deadline:
			t.Fatalf("corsd not ready within 30s; logs:\n%s", d.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	addr, _ := d.logs.find("grpc listening")["addr"].(string)
	if addr == "" {
		t.Fatalf("no address in the 'grpc listening' log line; logs:\n%s", d.logs)
	}
	d.addr = addr
	return d
}

// stop sends SIGTERM and requires a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("corsd did not exit within 20s of SIGTERM; logs:\n%s", d.logs)
	}
	if d.err != nil {
		t.Fatalf("corsd exited with %v after SIGTERM; logs:\n%s", d.err, d.logs)
	}
}

// grpcurl runs the real grpcurl against a daemon.
type grpcurl struct {
	bin  string
	addr string
}

// call runs grpcurl with args before the address and method, and data as
// the request body (none when empty). It returns stdout, stderr and
// whether grpcurl succeeded.
func (g *grpcurl) call(t *testing.T, headers []string, method, data string) (string, string, bool) {
	t.Helper()
	args := []string{"-plaintext", "-max-time", "20"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if data != "" {
		args = append(args, "-d", "@")
	}
	args = append(args, g.addr)
	if method != "" {
		args = append(args, method)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Stdin = strings.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("grpcurl %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), err == nil
}

// ok calls and decodes a successful JSON response.
func (g *grpcurl) ok(t *testing.T, headers []string, method, data string) map[string]any {
	t.Helper()
	out, errOut, ok := g.call(t, headers, method, data)
	if !ok {
		t.Fatalf("grpcurl %s failed:\n%s%s", method, out, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("grpcurl %s: output is not JSON: %v\n%s", method, err, out)
	}
	return m
}

// fails calls and requires a failure with the given status code name.
func (g *grpcurl) fails(t *testing.T, headers []string, method, data, code string) {
	t.Helper()
	out, errOut, ok := g.call(t, headers, method, data)
	if ok {
		t.Fatalf("grpcurl %s succeeded, want %s:\n%s", method, code, out)
	}
	if !strings.Contains(errOut, "Code: "+code) {
		t.Fatalf("grpcurl %s: want Code: %s, got:\n%s", method, code, errOut)
	}
}

// get walks nested JSON objects by keys.
func get(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[k]
	}
	return v
}

func TestGrpcurl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts corsd")
	}
	root := moduleRoot(t)
	gc := grpcurlPath(t, root)
	allowedJSON, err := os.ReadFile(filepath.Join(root, "..", "shared", "testdata", "extauthz", "allowed.json"))
	if err != nil {
		t.Fatalf("ext_authz fixture (shared/testdata beside the repository): %v", err)
	}
	bin := buildCorsd(t, root)
	dir := t.TempDir()
	const token = "e2e-admin-token-0123456789abcdef"
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("- name: e2e\n  token: "+token+"\n  scopes: [read, write, check]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "corsd.db")
	auth := []string{"authorization: Bearer " + token}

	d := startCorsd(t, bin, "--db", db, "--tokens-file", tokens)
	g := &grpcurl{bin: gc, addr: d.addr}

	t.Run("list services", func(t *testing.T) {
		out, errOut, ok := g.call(t, nil, "list", "")
		if !ok {
			t.Fatalf("grpcurl list: %s", errOut)
		}
		services := strings.Fields(out)
		for _, want := range []string{"corsd.v1.PolicyService", "corsd.v1.DecisionService", "envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
			if !slices.Contains(services, want) {
				t.Errorf("grpcurl list = %v, missing %s", services, want)
			}
		}
	})
	t.Run("health", func(t *testing.T) {
		if got := get(g.ok(t, nil, "grpc.health.v1.Health/Check", "{}"), "status"); got != "SERVING" {
			t.Errorf("health = %v, want SERVING", got)
		}
	})

	created := g.ok(t, auth, "corsd.v1.PolicyService/CreatePolicy", `{"policyId":"acme","policy":{"description":"e2e","hosts":["api.example.com"],"allowedMethods":["PUT"]}}`)
	staleEtag, _ := get(created, "policy", "etag").(string)
	if staleEtag == "" {
		t.Fatalf("CreatePolicy returned no etag: %v", created)
	}
	added := g.ok(t, auth, "corsd.v1.PolicyService/AddOrigin", `{"policy":"policies/acme","origin":{"pattern":"https://app.example.com","allowCredentials":true}}`)
	if origins, _ := get(added, "policy", "origins").([]any); len(origins) != 1 {
		t.Fatalf("AddOrigin: origins = %v, want one", get(added, "policy", "origins"))
	}

	checkAllowed := func(t *testing.T, g *grpcurl) {
		t.Helper()
		dec := g.ok(t, nil, "corsd.v1.DecisionService/CheckOrigin", `{"host":"api.example.com","method":"GET","origin":"https://app.example.com"}`)
		if get(dec, "decision", "allowed") != true || get(dec, "decision", "reason") != "REASON_ALLOWED" || get(dec, "decision", "policy") != "policies/acme" {
			t.Errorf("CheckOrigin = %v, want allowed by policies/acme", dec)
		}
	}
	t.Run("CheckOrigin", func(t *testing.T) { checkAllowed(t, g) })

	t.Run("ext_authz Check", func(t *testing.T) {
		resp := g.ok(t, nil, "envoy.service.auth.v3.Authorization/Check", string(allowedJSON))
		if code := get(resp, "status", "code"); code != nil && code != float64(0) {
			t.Fatalf("status = %v, want OK; response %v", code, resp)
		}
		ok, _ := get(resp, "okResponse").(map[string]any)
		if ok == nil {
			t.Fatalf("no okResponse: %v", resp)
		}
		headers := map[string]string{}
		for _, h := range ok["responseHeadersToAdd"].([]any) {
			hdr, _ := get(h.(map[string]any), "header").(map[string]any)
			k, _ := hdr["key"].(string)
			v, _ := hdr["value"].(string)
			headers[strings.ToLower(k)] = v
		}
		if got := headers["access-control-allow-origin"]; got != "https://app.example.com" {
			t.Errorf("access-control-allow-origin = %q, want https://app.example.com (headers %v)", got, headers)
		}
		if got := headers["access-control-allow-credentials"]; got != "true" {
			t.Errorf("access-control-allow-credentials = %q, want true", got)
		}
	})

	t.Run("stale etag refused", func(t *testing.T) {
		g.fails(t, auth, "corsd.v1.PolicyService/UpdatePolicy", `{"policy":{"name":"policies/acme","description":"late","etag":"`+staleEtag+`"},"updateMask":{"paths":["description"]}}`, "Aborted")
	})
	t.Run("unauthenticated admin call refused", func(t *testing.T) {
		g.fails(t, nil, "corsd.v1.PolicyService/GetPolicy", `{"name":"policies/acme"}`, "Unauthenticated")
		g.fails(t, []string{"authorization: Bearer wrong-token-0123456789"}, "corsd.v1.PolicyService/GetPolicy", `{"name":"policies/acme"}`, "Unauthenticated")
	})
	t.Run("invalid policy names the field", func(t *testing.T) {
		_, errOut, ok := g.call(t, auth, "corsd.v1.PolicyService/AddOrigin", `{"policy":"policies/acme","origin":{"pattern":"https://evil.example/path"}}`)
		if ok || !strings.Contains(errOut, "Code: InvalidArgument") || !strings.Contains(errOut, "origin.pattern") {
			t.Errorf("AddOrigin with a path: want InvalidArgument naming origin.pattern, got:\n%s", errOut)
		}
	})

	d.stop(t)
	if d.logs.find("stopped") == nil {
		t.Errorf("no 'stopped' log line after SIGTERM; logs:\n%s", d.logs)
	}

	d2 := startCorsd(t, bin, "--db", db, "--tokens-file", tokens)
	g2 := &grpcurl{bin: gc, addr: d2.addr}
	t.Run("data survives a restart", func(t *testing.T) {
		p := g2.ok(t, auth, "corsd.v1.PolicyService/GetPolicy", `{"name":"policies/acme"}`)
		if origins, _ := get(p, "policy", "origins").([]any); len(origins) != 1 {
			t.Errorf("after restart: origins = %v, want one", get(p, "policy", "origins"))
		}
		checkAllowed(t, g2)
	})
	d2.stop(t)
}
