package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

// stopClean sends SIGTERM and requires a clean exit within 20s.
func stopClean(t *testing.T, d *corsdtest.Daemon) {
	t.Helper()
	if err := d.Stop(20 * time.Second); err != nil {
		t.Fatalf("stop corsd: %v; logs:\n%s", err, d.Logs())
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
	root := corsdtest.MustModuleRoot(t)
	gc := corsdtest.MustTool(t, root, "grpcurl")
	allowedJSON, err := os.ReadFile(filepath.Join(root, "testdata", "extauthz", "allowed.json"))
	if err != nil {
		t.Fatalf("ext_authz fixture (testdata/extauthz): %v", err)
	}
	bin := corsdtest.MustBuild(t, "./cmd/corsd")
	dir := t.TempDir()
	const token = "e2e-admin-token-0123456789abcdef"
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("- name: e2e\n  token: "+token+"\n  scopes: [read, write, check]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "corsd.db")
	auth := []string{"authorization: Bearer " + token}

	d := corsdtest.MustStart(t, bin, "--db", db, "--tokens-file", tokens)
	g := &grpcurl{bin: gc, addr: d.GRPCAddr}

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
		// corsd's default decision record: the reason, under "corsd".
		if md, _ := get(resp, "dynamicMetadata").(map[string]any); len(md) != 1 || md["corsd"] != "allowed" {
			t.Errorf("dynamicMetadata = %v, want {\"corsd\": \"allowed\"} (--decision-record minimal)", get(resp, "dynamicMetadata"))
		}
		// The second answer comes from the kept, encoded answers: the same.
		if again := g.ok(t, nil, "envoy.service.auth.v3.Authorization/Check", string(allowedJSON)); !reflect.DeepEqual(again, resp) {
			t.Errorf("second Check = %v, want the first answer %v", again, resp)
		}
	})

	t.Run("ReportDecisions", func(t *testing.T) {
		// Tokens are configured: a report needs the check scope even with
		// decisions open.
		g.fails(t, nil, "corsd.v1.DecisionService/ReportDecisions", `{"reporter":"grpcurl","reports":[{"policy":"policies/acme","kind":"DECISION_KIND_ACTUAL","reason":"REASON_ALLOWED","allowed":true,"count":"1"}]}`, "Unauthenticated")
		resp := g.ok(t, auth, "corsd.v1.DecisionService/ReportDecisions", `{"reporter":"grpcurl","reports":[`+
			`{"policy":"policies/acme","policyRevision":"2","kind":"DECISION_KIND_ACTUAL","reason":"REASON_ORIGIN_NOT_ALLOWED","origin":"https://evil.example","reportOnly":true,"count":"3"},`+
			`{"policy":"policies/gone","kind":"DECISION_KIND_ACTUAL","reason":"REASON_ALLOWED","allowed":true,"count":"1"}]}`)
		if get(resp, "recorded") != float64(1) || get(resp, "dropped") != float64(1) {
			t.Errorf("ReportDecisions = %v, want recorded 1, dropped 1", resp)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := d.Logs().Wait(ctx, "reported decision"); err != nil {
			t.Errorf("no 'reported decision' log line (%v); logs:\n%s", err, d.Logs())
		}
		_, errOut, ok := g.call(t, auth, "corsd.v1.DecisionService/ReportDecisions", `{"reports":[{"policy":"acme","count":"0"}]}`)
		for _, want := range []string{"Code: InvalidArgument", "reports[0].policy", "reports[0].kind", "reports[0].reason", "reports[0].count"} {
			if ok || !strings.Contains(errOut, want) {
				t.Errorf("ReportDecisions with a bad report: want %q in:\n%s", want, errOut)
			}
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

	stopClean(t, d)
	if d.Logs().Find("stopped") == nil {
		t.Errorf("no 'stopped' log line after SIGTERM; logs:\n%s", d.Logs())
	}

	d2 := corsdtest.MustStart(t, bin, "--db", db, "--tokens-file", tokens)
	g2 := &grpcurl{bin: gc, addr: d2.GRPCAddr}
	t.Run("data survives a restart", func(t *testing.T) {
		p := g2.ok(t, auth, "corsd.v1.PolicyService/GetPolicy", `{"name":"policies/acme"}`)
		if origins, _ := get(p, "policy", "origins").([]any); len(origins) != 1 {
			t.Errorf("after restart: origins = %v, want one", get(p, "policy", "origins"))
		}
		checkAllowed(t, g2)
	})
	stopClean(t, d2)
}

// TestShutdownWithOpenHealthWatch: a health Watch that the real grpcurl
// holds open learns NOT_SERVING when corsd gets SIGTERM and then ends, so
// corsd exits well within its 60 s shutdown timeout (Stop allows 30 s and
// reports an error if it had to SIGKILL).
func TestShutdownWithOpenHealthWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts corsd")
	}
	gc := corsdtest.MustTool(t, corsdtest.MustModuleRoot(t), "grpcurl")
	bin := corsdtest.MustBuild(t, "./cmd/corsd")
	d := corsdtest.MustStart(t, bin, "--db", filepath.Join(t.TempDir(), "corsd.db"), "--shutdown-timeout", "60s")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gc, "-plaintext", "-d", `{"service": "corsd.v1.DecisionService"}`, d.GRPCAddr, "grpc.health.v1.Health/Watch")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statuses := make(chan string, 8)
	go func() {
		defer close(statuses)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, v, ok := strings.Cut(sc.Text(), `"status": "`); ok {
				statuses <- strings.TrimSuffix(v, `"`)
			}
		}
	}()
	if s := <-statuses; s != "SERVING" {
		t.Fatalf("first health status %q, want SERVING; stderr: %s", s, stderr.String())
	}

	start := time.Now()
	if err := d.Stop(30 * time.Second); err != nil {
		t.Fatalf("corsd with an open health watch: %v", err)
	}
	t.Logf("corsd stopped %v after SIGTERM with a health watch open", time.Since(start).Round(time.Millisecond))
	var rest []string
	for s := range statuses {
		rest = append(rest, s)
	}
	if !slices.Contains(rest, "NOT_SERVING") {
		t.Errorf("health statuses after SIGTERM %v, want NOT_SERVING", rest)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(stderr.String(), "Code: Unavailable") {
		t.Errorf("grpcurl's watch ended with %v, stderr %q; want Code: Unavailable", err, stderr.String())
	}
}
