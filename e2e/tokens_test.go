package e2e

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

// TestTokenRotationOnSIGHUP: corsd re-reads its tokens file on SIGHUP. The
// new tokens work and the old ones stop working at once; a broken or empty
// file is refused with a log line and the tokens in force stay.
func TestTokenRotationOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts corsd")
	}
	gc := corsdtest.MustTool(t, corsdtest.MustModuleRoot(t), "grpcurl")
	bin := corsdtest.MustBuild(t, "./cmd/corsd")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(tokens, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const (
		oldToken = "old-admin-token-0123456789abcdef"
		newToken = "new-admin-token-0123456789abcdef"
	)
	write("- name: old\n  token: " + oldToken + "\n  scopes: [read]\n")
	d := corsdtest.MustStart(t, bin, "--db", filepath.Join(dir, "corsd.db"), "--tokens-file", tokens)
	g := &grpcurl{bin: gc, addr: d.GRPCAddr}
	list := func(token string) []string { return []string{"authorization: Bearer " + token} }
	g.ok(t, list(oldToken), "corsd.v1.PolicyService/ListPolicies", "{}")
	g.fails(t, list(newToken), "corsd.v1.PolicyService/ListPolicies", "{}", "Unauthenticated")

	// reload sends SIGHUP and waits for the n-th log line msg.
	reload := func(msg string, n int) {
		t.Helper()
		if err := d.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := d.Logs().WaitNth(ctx, msg, n); err != nil {
			t.Fatalf("after SIGHUP: %v; logs:\n%s", err, d.Logs())
		}
	}

	write("- name: new\n  token: " + newToken + "\n  scopes: [read]\n")
	reload("tokens reloaded", 1)
	g.ok(t, list(newToken), "corsd.v1.PolicyService/ListPolicies", "{}")
	g.fails(t, list(oldToken), "corsd.v1.PolicyService/ListPolicies", "{}", "Unauthenticated")

	write("- name: broken\n  token: short\n  scopes: [read]\n")
	reload("token reload failed; keeping the current tokens", 1)
	g.ok(t, list(newToken), "corsd.v1.PolicyService/ListPolicies", "{}")

	// An empty set would make every loopback caller an admin: refused.
	write("[]\n")
	reload("token reload failed; keeping the current tokens", 2)
	g.ok(t, list(newToken), "corsd.v1.PolicyService/ListPolicies", "{}")
	g.fails(t, nil, "corsd.v1.PolicyService/ListPolicies", "{}", "Unauthenticated")
	stopClean(t, d)
}
