package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// edit rewrites file with old replaced by new, failing when old is absent.
func edit(t *testing.T, file, old, new string) {
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

// TestGitWorkflow runs export -> edit -> diff -> apply -> diff on one
// corsd, with golden output for each step, then prune and a saved plan
// refused after a concurrent change.
func TestGitWorkflow(t *testing.T) {
	addr := startCorsd(t)
	for _, f := range []string{"testdata/acme.yaml", "testdata/more.yaml"} {
		if r := corsctl(t, "--addr", addr, "apply", "-f", f); r.code != 0 {
			t.Fatalf("apply %s: %s", f, r.stderr)
		}
	}
	dir := filepath.Join(t.TempDir(), "policies")
	steps := []struct {
		name     string
		args     []string
		edit     func(t *testing.T)
		wantCode int
	}{
		{name: "git-export-dir", args: []string{"export", "-d", dir}},
		{name: "git-diff-none", args: []string{"diff", "-f", dir}},
		{name: "git-diff-edited", args: []string{"diff", "-f", dir}, wantCode: 1, edit: func(t *testing.T) {
			acme := filepath.Join(dir, "acme.yaml")
			edit(t, acme, "- pattern: http://localhost:*\n  description: local development\n", "")
			edit(t, acme, "- pattern: https://app.acme.example\n  allow_credentials: true\n", "- pattern: https://app.acme.example\n")
			edit(t, acme, "origins:\n", "origins:\n- pattern: https://partner.example.net\n  allow_credentials: true\n")
			edit(t, acme, "max_age: 600s", "max_age: 300s")
			edit(t, filepath.Join(dir, "docs.yaml"), "name: policies/docs", "name: policies/docs\ndescription: public docs")
			if err := os.WriteFile(filepath.Join(dir, "new.yaml"), []byte("name: policies/new\norigins:\n  - pattern: https://new.example\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "billing.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "git-diff-prune", args: []string{"diff", "-f", dir, "--prune"}, wantCode: 1},
		{name: "git-diff-json", args: []string{"diff", "-f", dir, "-o", "json"}, wantCode: 1},
		{name: "git-apply-dry-run", args: []string{"apply", "-f", dir, "--prune", "--dry-run"}},
		{name: "git-apply", args: []string{"apply", "-f", dir}},
		{name: "git-diff-after-apply", args: []string{"diff", "-f", dir}},
		{name: "git-apply-prune", args: []string{"apply", "-f", dir, "--prune"}},
		{name: "git-diff-after-prune", args: []string{"diff", "-f", dir, "--prune"}},
		{name: "git-export-list", args: []string{"export"}},
	}
	for _, s := range steps {
		if s.edit != nil {
			s.edit(t)
		}
		r := corsctl(t, append([]string{"--addr", addr}, s.args...)...)
		if r.code != s.wantCode {
			t.Errorf("%s: corsctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", s.name, strings.Join(s.args, " "), r.code, s.wantCode, r.stdout, r.stderr)
		}
		shown := make([]string, len(s.args))
		for i, a := range s.args {
			shown[i] = strings.ReplaceAll(a, dir, "DIR")
		}
		golden(t, s.name, shown, hideDir(r, dir))
	}

	// A second export of the same state writes the same bytes.
	first := corsctl(t, "--addr", addr, "export").stdout
	if again := corsctl(t, "--addr", addr, "export").stdout; again != first {
		t.Errorf("two exports of one state differ:\n%s\n---\n%s", first, again)
	}
}

// hideDir replaces the temporary directory in r's output by DIR.
func hideDir(r result, dir string) result {
	r.stdout = strings.ReplaceAll(r.stdout, dir, "DIR")
	r.stderr = strings.ReplaceAll(r.stderr, dir, "DIR")
	return r
}

// TestApplyPlanRefusesConcurrentChange: a change made on corsd between diff
// --plan-out and apply --plan makes apply write nothing, and the change
// stays.
func TestApplyPlanRefusesConcurrentChange(t *testing.T) {
	addr := startCorsd(t)
	if r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/acme.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r.stderr)
	}
	plan := filepath.Join(t.TempDir(), "plan.json")
	if r := corsctl(t, "--addr", addr, "diff", "-f", "testdata/acme-changed.yaml", "--plan-out", plan); r.code != 1 {
		t.Fatalf("diff: exit %d, want 1 (a difference)\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := corsctl(t, "--addr", addr, "origins", "add", "acme", "https://concurrent.example"); r.code != 0 {
		t.Fatalf("origins add: %s", r.stderr)
	}
	r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/acme-changed.yaml", "--plan", plan)
	if r.code != 1 || !strings.Contains(r.stderr, "policies/acme changed on corsd since the diff") {
		t.Errorf("apply --plan after a concurrent change: exit %d, want 1 and a refusal\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := corsctl(t, "--addr", addr, "origins", "list", "acme").stdout; !strings.Contains(got, "https://concurrent.example") {
		t.Errorf("the concurrent change was overwritten:\n%s", got)
	}

	// A fresh plan applies.
	if r := corsctl(t, "--addr", addr, "diff", "-f", "testdata/acme-changed.yaml", "--plan-out", plan); r.code != 1 {
		t.Fatalf("diff: exit %d", r.code)
	}
	if r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/acme-changed.yaml", "--plan", plan); r.code != 0 {
		t.Fatalf("apply --plan with a fresh plan: exit %d\n%s", r.code, r.stderr)
	}
	// The plan is tied to its files.
	if r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/acme.yaml", "--plan", plan); r.code != 1 || !strings.Contains(r.stderr, "the policy files differ") {
		t.Errorf("apply --plan with other files: exit %d\n%s", r.code, r.stderr)
	}
}

// TestApplyItemUsesTheEtagItRead: an update is conditional on the etag
// read when the plan was made, so a change in between is refused with
// Aborted and not overwritten.
func TestApplyItemUsesTheEtagItRead(t *testing.T) {
	addr := startCorsd(t)
	if r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/acme.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r.stderr)
	}
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	src, err := readPolicySource("testdata/acme-changed.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := makePlan(t.Context(), c, src, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.items) != 1 || pl.items[0].action != actionUpdate {
		t.Fatalf("plan = %+v, want one update", pl.items)
	}
	// Someone else writes after the plan read the policy.
	if _, err := c.Policies().AddOrigin(t.Context(), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "https://other.example"}}); err != nil {
		t.Fatal(err)
	}
	_, _, err = applyItem(t.Context(), c, pl.items[0], false)
	if status.Code(err) != codes.Aborted {
		t.Fatalf("applyItem after a concurrent change: %v, want Aborted", err)
	}
	got, err := c.Policies().GetPolicy(t.Context(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range got.GetPolicy().GetOrigins() {
		found = found || o.GetPattern() == "https://other.example"
	}
	if !found {
		t.Errorf("the concurrent change was overwritten: %v", got.GetPolicy().GetOrigins())
	}
}

func TestReadPolicySource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "name: b\n")
	write("a.json", `{"name": "a"}`)
	write("notes.txt", "not a policy")
	write(".hidden.yaml", "name: hidden\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	write("sub/c.yaml", "name: c\n")
	src, err := readPolicySource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sp := range src {
		names = append(names, sp.policy.GetName())
	}
	if got, want := strings.Join(names, ","), "policies/a,policies/b"; got != want {
		t.Errorf("readPolicySource(dir) names = %s, want %s", got, want)
	}
	write("dup.yml", "name: policies/a\n")
	if _, err := readPolicySource(dir, nil); err == nil || !strings.Contains(err.Error(), "defined in both") {
		t.Errorf("duplicate across files: %v, want an error naming both", err)
	}
	empty := t.TempDir()
	if _, err := readPolicySource(empty, nil); err == nil || !strings.Contains(err.Error(), "no policy file") {
		t.Errorf("empty directory: %v", err)
	}
}

// TestCompletePolicyNames: Tab after a command that takes a policy offers
// the ids corsd holds; with corsd unreachable, nothing (and no files).
func TestCompletePolicyNames(t *testing.T) {
	addr := startCorsd(t)
	if r := corsctl(t, "--addr", addr, "apply", "-f", "testdata/more.yaml"); r.code != 0 {
		t.Fatalf("apply: %s", r.stderr)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "get", args: []string{"__complete", "--addr", addr, "policies", "get", ""}, want: "billing\ndocs\n:4\n"},
		{name: "prefix", args: []string{"__complete", "--addr", addr, "origins", "add", "d"}, want: "docs\n:4\n"},
		{name: "second argument", args: []string{"__complete", "--addr", addr, "origins", "add", "docs", ""}, want: ":4\n"},
		{name: "flag", args: []string{"__complete", "--addr", addr, "check", "--policy", "b"}, want: "billing\n:4\n"},
		{name: "unreachable", args: []string{"__complete", "--addr", "127.0.0.1:1", "--timeout", "1s", "policies", "get", ""}, want: ":5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := corsctl(t, tt.args...)
			if r.code != 0 || r.stdout != tt.want {
				t.Errorf("corsctl %s: exit %d, stdout %q, want %q\nstderr:\n%s", strings.Join(tt.args, " "), r.code, r.stdout, tt.want, r.stderr)
			}
		})
	}
}
