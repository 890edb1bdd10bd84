package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

// curlReply is what the real curl got from the JSON/HTTP API.
type curlReply struct {
	status int
	body   map[string]any
	raw    string
}

// curlAPI POSTs data to method on the HTTP port with the real curl, the way
// the README shows (-H 'Authorization: Bearer …' -d '…'), plus extra
// arguments.
func curlAPI(t *testing.T, httpAddr, token, method, data string, extra ...string) curlReply {
	t.Helper()
	args := []string{"-sS", "--max-time", "20", "-w", "\n%{http_code}"}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	args = append(args, extra...)
	args = append(args, "-d", data, "http://"+httpAddr+"/"+method)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
	}
	out := stdout.String()
	i := strings.LastIndexByte(out, '\n')
	status, err := strconv.Atoi(out[i+1:])
	if err != nil {
		t.Fatalf("curl %v: no status in %q", args, out)
	}
	r := curlReply{status: status, raw: out[:i]}
	if err := json.Unmarshal([]byte(r.raw), &r.body); err != nil {
		t.Fatalf("curl %s: reply is not JSON: %v\n%s", method, err, r.raw)
	}
	return r
}

// TestCurlJSONAPI calls the JSON/HTTP API of the real corsd with the real
// curl: list, create, a field violation, Unauthenticated, and a read-only
// token that may not write.
func TestCurlJSONAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts corsd")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found on PATH: install it (apt-get install curl)")
	}
	const (
		admin  = "curl-admin-token-0123456789"
		reader = "curl-reader-token-0123456789"
	)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("- {name: ci, token: "+admin+", scopes: [read, write]}\n- {name: viewer, token: "+reader+", scopes: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := corsdtest.MustStart(t, corsdtest.MustBuild(t, "./cmd/corsd"), "--db", filepath.Join(dir, "corsd.db"), "--tokens-file", tokens)
	defer stopClean(t, d)
	if d.HTTPAddr == "" {
		t.Fatalf("no HTTP listener:\n%s", d.Logs())
	}
	const (
		list   = "corsd.v1.PolicyService/ListPolicies"
		create = "corsd.v1.PolicyService/CreatePolicy"
		json   = "Content-Type: application/json"
	)

	t.Run("create", func(t *testing.T) {
		r := curlAPI(t, d.HTTPAddr, admin, create, `{"policyId":"acme","policy":{"origins":[{"pattern":"https://app.example.com","allowCredentials":true}],"maxAge":"600s"}}`, "-H", json)
		if r.status != 200 {
			t.Fatalf("CreatePolicy: %d %s", r.status, r.raw)
		}
		p, _ := r.body["policy"].(map[string]any)
		if p["name"] != "policies/acme" || p["etag"] == "" || p["maxAge"] != "600s" {
			t.Errorf("CreatePolicy returned %s", r.raw)
		}
	})
	t.Run("list", func(t *testing.T) {
		// As the README shows it: no Content-Type (curl sends its form type).
		r := curlAPI(t, d.HTTPAddr, reader, list, `{}`)
		if r.status != 200 {
			t.Fatalf("ListPolicies: %d %s", r.status, r.raw)
		}
		ps, _ := r.body["policies"].([]any)
		if len(ps) != 1 || !strings.Contains(r.raw, `"pattern":"https://app.example.com"`) {
			t.Errorf("ListPolicies returned %s", r.raw)
		}
	})
	t.Run("field violation", func(t *testing.T) {
		r := curlAPI(t, d.HTTPAddr, admin, create, `{"policyId":"bad","policy":{"origins":[{"pattern":"*","allowCredentials":true}]}}`, "-H", json)
		if r.status != 400 || r.body["code"] != "invalid_argument" {
			t.Fatalf("CreatePolicy(* with credentials): %d %s, want 400 invalid_argument", r.status, r.raw)
		}
		details, _ := r.body["details"].([]any)
		var fields []string
		for _, dt := range details {
			dm, _ := dt.(map[string]any)
			debug, _ := dm["debug"].(map[string]any)
			fvs, _ := debug["fieldViolations"].([]any)
			for _, fv := range fvs {
				m, _ := fv.(map[string]any)
				if f, _ := m["field"].(string); f != "" {
					fields = append(fields, f)
				}
				if desc, _ := m["description"].(string); !strings.Contains(desc, "never allows credentials") {
					t.Errorf("violation description %q does not explain the refusal", desc)
				}
			}
		}
		if len(fields) != 1 || fields[0] != "policy.origins[0].allow_credentials" {
			t.Errorf("field violations %v, want [policy.origins[0].allow_credentials]\n%s", fields, r.raw)
		}
		if r := curlAPI(t, d.HTTPAddr, reader, "corsd.v1.PolicyService/GetPolicy", `{"name":"policies/bad"}`); r.status != 404 {
			t.Errorf("the refused policy was stored: %d %s", r.status, r.raw)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		r := curlAPI(t, d.HTTPAddr, "", list, `{}`)
		if r.status != 401 || r.body["code"] != "unauthenticated" {
			t.Errorf("ListPolicies without a token: %d %s, want 401 unauthenticated", r.status, r.raw)
		}
	})
	t.Run("read-only token cannot write", func(t *testing.T) {
		r := curlAPI(t, d.HTTPAddr, reader, "corsd.v1.PolicyService/AddOrigin", `{"policy":"policies/acme","origin":{"pattern":"https://b.example.com"}}`, "-H", json)
		if r.status != 403 || r.body["code"] != "permission_denied" {
			t.Errorf("AddOrigin with a read-only token: %d %s, want 403 permission_denied", r.status, r.raw)
		}
	})
	t.Run("the change log names the token", func(t *testing.T) {
		r := curlAPI(t, d.HTTPAddr, reader, "corsd.v1.PolicyService/ListChanges", `{"policy":"policies/acme"}`, "-H", json)
		if r.status != 200 || !strings.Contains(r.raw, `"actor":"ci"`) {
			t.Errorf("ListChanges: %d %s, want actor ci", r.status, r.raw)
		}
	})
}
