package e2e

// The policy-repository workflow with the real binaries: export -> edit ->
// diff -> apply -> diff is empty, and a change made on corsd between a
// reviewed diff and its apply is refused. Helpers are prefixed with git.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corsd/corsd/internal/corsdtest"
)

// gitEdit replaces old by new in file, failing when old is absent.
func gitEdit(t *testing.T, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not hold %q:\n%s", file, old, b)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGitWorkflow(t *testing.T) {
	corsd, corsctl := corsdtest.MustBuild(t, "./cmd/corsd"), corsdtest.MustBuild(t, "./cmd/corsctl")
	t.Run("version", func(t *testing.T) { gitCheckVersion(t, corsd, corsctl) })
	d := ctlStartCorsd(t, corsd)
	addr := d.GRPCAddr
	ctlMust(t, corsctl, addr, "apply", "-f", ctlWriteFile(t, "seed.yaml", ctlPolicies))

	// export: one file per policy, only what a person writes, stable.
	repo := filepath.Join(t.TempDir(), "policies")
	ctlMust(t, corsctl, addr, "export", "-d", repo)
	shop := filepath.Join(repo, "shop.yaml")
	b, err := os.ReadFile(shop)
	if err != nil {
		t.Fatal(err)
	}
	for _, outputOnly := range []string{"etag", "revision", "create_time", "update_time"} {
		if strings.Contains(string(b), outputOnly) {
			t.Errorf("exported %s holds %s:\n%s", shop, outputOnly, b)
		}
	}
	if !strings.HasPrefix(string(b), "name: policies/shop\n") {
		t.Errorf("exported %s does not start with its name:\n%s", shop, b)
	}
	again := filepath.Join(t.TempDir(), "again")
	ctlMust(t, corsctl, addr, "export", "-d", again)
	if b2, _ := os.ReadFile(filepath.Join(again, "shop.yaml")); string(b2) != string(b) {
		t.Errorf("a second export differs:\n%s\n---\n%s", b, b2)
	}
	if r := ctlRun(t, corsctl, addr, "diff", "-f", repo); r.code != 0 {
		t.Fatalf("diff right after export: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}

	// edit -> diff: per origin, with credential flags; exit 1.
	gitEdit(t, shop, "- pattern: https://*.preview.shop.example.com\n", "- pattern: https://partner.example.net\n  allow_credentials: true\n")
	r := ctlRun(t, corsctl, addr, "diff", "-f", repo)
	for _, want := range []string{
		"~ policies/shop (update",
		"+ origin https://partner.example.net (credentials)",
		"- origin https://*.preview.shop.example.com",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("diff output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.code != 1 {
		t.Errorf("diff with a difference: exit %d, want 1\n%s", r.code, r.stderr)
	}

	// A reviewed plan is refused after a concurrent change; nothing is
	// overwritten.
	plan := filepath.Join(t.TempDir(), "plan.json")
	if r := ctlRun(t, corsctl, addr, "diff", "-f", repo, "--plan-out", plan); r.code != 1 {
		t.Fatalf("diff --plan-out: exit %d\n%s", r.code, r.stderr)
	}
	ctlMust(t, corsctl, addr, "origins", "add", "shop", "https://hotfix.example.com")
	r = ctlRun(t, corsctl, addr, "apply", "-f", repo, "--plan", plan)
	if r.code != 1 || !strings.Contains(r.stderr, "policies/shop changed on corsd since the diff") {
		t.Errorf("apply --plan after a concurrent change: exit %d, want 1 and a refusal\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := ctlMust(t, corsctl, addr, "origins", "list", "shop"); !strings.Contains(got, "https://hotfix.example.com") || strings.Contains(got, "partner.example.net") {
		t.Errorf("after a refused apply corsd holds:\n%s", got)
	}

	// The hotfix goes into the files too; apply; diff is empty.
	gitEdit(t, shop, "origins:\n", "origins:\n- pattern: https://hotfix.example.com\n")
	out := ctlMust(t, corsctl, addr, "apply", "-f", repo)
	if !strings.Contains(out, "policies/shop updated") || !strings.Contains(out, "+ origin https://partner.example.net (credentials)") {
		t.Errorf("apply summary:\n%s", out)
	}
	if r := ctlRun(t, corsctl, addr, "diff", "-f", repo, "--prune"); r.code != 0 {
		t.Errorf("diff after apply: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The files still say what a person wrote: export gives them back.
	ctlMust(t, corsctl, addr, "export", "-d", again)
	b1, _ := os.ReadFile(shop)
	b2, _ := os.ReadFile(filepath.Join(again, "shop.yaml"))
	if string(b1) != string(b2) {
		t.Errorf("export after apply differs from the applied file:\n%s\n---\n%s", b1, b2)
	}
}

// gitCheckVersion: both binaries report the version they were built from,
// the same one.
func gitCheckVersion(t *testing.T, corsd, corsctl string) {
	out, err := exec.Command(corsd, "--version").Output()
	if err != nil {
		t.Fatalf("corsd --version: %v", err)
	}
	dv, ok := strings.CutPrefix(string(out), "corsd ")
	if !ok {
		t.Fatalf("corsd --version printed %q", out)
	}
	out, err = exec.Command(corsctl, "version").Output()
	if err != nil {
		t.Fatalf("corsctl version: %v", err)
	}
	cv, ok := strings.CutPrefix(string(out), "corsctl ")
	if !ok || cv != dv {
		t.Errorf("corsctl version printed %q, corsd --version %q: want the same version", out, dv)
	}
}
