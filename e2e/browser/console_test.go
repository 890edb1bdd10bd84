package browser

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corsd/corsd/internal/corsdtest"
)

// Tokens of the console suite: alice signs in to the console, ci writes
// with corsctl, viewer may only read.
const (
	aliceToken  = "alice-console-token-0123456789"
	ciToken     = "ci-console-token-0123456789"
	viewerToken = "viewer-console-token-0123456789"
)

// screenshotDir is where the console suite saves a screenshot per step
// (gitignored); CONSOLE_SCREENSHOTS overrides it.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testoutput", "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleEnv is a real corsd with tokens, corsctl, Chromium, and a page on
// an untrusted origin.
type consoleEnv struct {
	corsd   *corsdtest.Daemon
	corsctl string
	console string // http://127.0.0.1:PORT/console/
	evil    string // https://evil.test:PORT
	b       *browser
	shots   string
	step    int
}

func newConsoleEnv(t *testing.T) *consoleEnv {
	t.Helper()
	chromiumPath(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	err := os.WriteFile(tokens, fmt.Appendf(nil, `
- {name: alice, token: %s, scopes: [read, write, check]}
- {name: ci, token: %s, scopes: [read, write]}
- {name: viewer, token: %s, scopes: [read]}
`, aliceToken, ciToken, viewerToken), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d := corsdtest.MustStart(t, corsdtest.MustBuild(t, "./cmd/corsd"),
		// --decision-auth: the viewer may not watch, so its console polls
		// the change log instead.
		"--db", filepath.Join(dir, "corsd.db"), "--tokens-file", tokens, "--console", "--decision-auth")
	t.Cleanup(func() {
		if err := d.Stop(stopTimeout); err != nil {
			t.Errorf("stop corsd: %v\nlogs:\n%s", err, d.Logs())
		}
	})
	cert, spki := newCert(t)
	page, err := os.ReadFile(filepath.Join("testdata", "page.html"))
	if err != nil {
		t.Fatal(err)
	}
	evil := startTLS(t, cert, pageHandler(page))
	e := &consoleEnv{
		corsd:   d,
		corsctl: corsdtest.MustBuild(t, "./cmd/corsctl"),
		console: "http://" + d.HTTPAddr + "/console/",
		evil:    originOf(hostEvil, evil),
		b:       startBrowser(t, spki),
		shots:   screenshotDir(t),
	}
	seed := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(seed, []byte("- {name: acme, description: the ACME API}\n- {name: billing, description: billing service}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ctl(t, "policies", "create", "-f", seed)
	return e
}

// ctl runs the real corsctl as ci and fails the test when it fails.
func (e *consoleEnv) ctl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.corsctl, append([]string{"--addr", e.corsd.GRPCAddr, "--token", ciToken}, args...)...)
	cmd.Env = corsdtest.Env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("corsctl %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// shot saves a screenshot of the whole page as NN-name.png.
func (e *consoleEnv) shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	e.shotOf(t, ctx, name, chromedp.FullScreenshot(100))
}

// shotOf saves the screenshot that capture takes as NN-name.png.
func (e *consoleEnv) shotOf(t *testing.T, ctx context.Context, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	e.step++
	buf, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(e.shots, fmt.Sprintf("%02d-%s.png", e.step, name))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// waitText waits until the text of the first element matching sel
// contains want, and returns it.
func waitText(ctx context.Context, t *testing.T, sel, want string) string {
	t.Helper()
	var text string
	err := poll(ctx, propagateWithin, func() (bool, error) {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
		text = got
		return err == nil && strings.Contains(got, want), nil
	})
	if err != nil {
		t.Fatalf("%s: text %q does not contain %q: %v", sel, text, want, err)
	}
	return text
}

// exists reports whether sel matches an element now.
func exists(ctx context.Context, t *testing.T, sel string) bool {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func run(ctx context.Context, t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// fill sets the value of the input sel as typing would (input and change
// events fire).
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	return js(fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q; el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, value))
}

// js runs a script whose value does not matter.
func js(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

// signIn opens the console and signs in with token.
func (e *consoleEnv) signIn(ctx context.Context, t *testing.T, token string) {
	t.Helper()
	run(ctx, t,
		chromedp.Navigate(e.console),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#signin button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#policies")),
	)
}

// TestConsole drives the web console in Chromium against a real corsd, step
// by step as an operator would, saving a screenshot of each step.
func TestConsole(t *testing.T) {
	e := newConsoleEnv(t)
	ctx, cancel := context.WithTimeout(e.b.tab, 4*time.Minute)
	defer cancel()
	// A laptop-sized window; the narrow-window step resizes it.
	run(ctx, t, chromedp.EmulateViewport(1100, 900))
	// Each step builds on the one before: stop at the first failure.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("sign in", func(t *testing.T) {
		run(ctx, t, chromedp.Navigate(e.console), chromedp.WaitVisible(chromedp.CSS("#token")))
		e.shot(t, ctx, "sign-in")
		run(ctx, t, chromedp.SendKeys(chromedp.CSS("#token"), "wrong-token-0123456789"), chromedp.Click(chromedp.CSS("#signin button[type=submit]")))
		waitText(ctx, t, "#signin-error", "not valid")
		// By keyboard: the token field has the focus, Enter submits.
		run(ctx, t, fill("#token", ""), chromedp.Focus(chromedp.CSS("#token")), chromedp.KeyEvent(aliceToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#policies")))
		waitText(ctx, t, "#who", "read and write")
		waitText(ctx, t, "#policies", "acme")
		// The token stays in the tab's sessionStorage, out of cookies and URLs.
		cookie, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
		loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
		if cookie != "" || strings.Contains(loc, aliceToken) {
			t.Errorf("token leaked: cookie %q, location %q", cookie, loc)
		}
		run(ctx, t, chromedp.SendKeys(chromedp.CSS("#search"), "bill"))
		waitText(ctx, t, "#count", "1 of 2")
		e.shot(t, ctx, "policies-search")
		run(ctx, t, fill("#search", ""))
		// A new policy, from the list page.
		run(ctx, t, fill("#new-id", "storefront"), chromedp.Click(chromedp.CSS("#new-policy button[type=submit]")), chromedp.WaitVisible(chromedp.CSS("#add-pattern")))
		waitText(ctx, t, "#policy-title", "storefront")
		if out := e.ctl(t, "policies", "list"); !strings.Contains(out, "storefront") {
			t.Errorf("the new policy is not stored:\n%s", out)
		}
	})

	step("add an origin with credentials", func(t *testing.T) {
		run(ctx, t,
			js(`location.hash = "#/policies/acme"`),
			chromedp.WaitVisible(chromedp.CSS("#add-pattern")),
			chromedp.SendKeys(chromedp.CSS("#add-pattern"), "https://app.example.com"),
			chromedp.Click(chromedp.CSS("#add-credentials")),
			chromedp.SendKeys(chromedp.CSS("#add-description"), "the web app"),
			chromedp.Click(chromedp.CSS("#add-submit")),
		)
		waitText(ctx, t, "#origins", "https://app.example.com")
		waitText(ctx, t, `#origins tr[data-pattern="https://app.example.com"]`, "yes")
		waitText(ctx, t, "#audit", "alice")
		e.shot(t, ctx, "origin-added")
		unlabelled, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input, select, textarea")].filter(el => el.labels.length === 0 && !el.getAttribute("aria-label")).map(el => el.id || el.outerHTML)`))
		if err != nil || len(unlabelled) > 0 {
			t.Errorf("controls without a label: %v (err %v)", unlabelled, err)
		}
	})

	step("dangerous origins refused with their explanation", func(t *testing.T) {
		for _, tc := range []struct{ pattern, want, field string }{
			{"*", "never allows credentials", "Credentials"},
			// Refused with or without credentials: the pattern itself.
			{"https://*.github.io", "public suffix", "Pattern"},
			{"http://app.example.com", "network attacker can impersonate it", "Credentials"},
		} {
			run(ctx, t,
				fill("#add-pattern", ""),
				chromedp.SendKeys(chromedp.CSS("#add-pattern"), tc.pattern),
				js(`document.querySelector("#add-credentials").checked = true`),
				chromedp.Click(chromedp.CSS("#add-submit")),
			)
			text := waitText(ctx, t, "#add-error", tc.want)
			if !strings.Contains(text, tc.field) {
				t.Errorf("refusal of %s does not name the field: %q", tc.pattern, text)
			}
			if tc.pattern == "https://*.github.io" {
				e.shot(t, ctx, "dangerous-refused")
			}
		}
		if got := waitText(ctx, t, "#origins", "app.example.com"); strings.Contains(got, "github.io") {
			t.Errorf("a refused origin was stored: %q", got)
		}
		// Reset the form for the next steps.
		run(ctx, t, js(`location.hash = "#/"`), chromedp.WaitVisible(chromedp.CSS("#policies")),
			js(`location.hash = "#/policies/acme"`), chromedp.WaitVisible(chromedp.CSS("#add-pattern")))
	})

	step("a change made with corsctl appears live", func(t *testing.T) {
		e.ctl(t, "origins", "add", "acme", "https://live.example.com", "--description", "added by CI")
		waitText(ctx, t, "#origins", "https://live.example.com")
		waitText(ctx, t, "#notice", "changed by ci")
		waitText(ctx, t, "#audit", "ci")
		e.shot(t, ctx, "live-change")
	})

	step("a stale edit is refused and explained", func(t *testing.T) {
		run(ctx, t, fill("#methods", ""), chromedp.SendKeys(chromedp.CSS("#methods"), "PUT, DELETE"))
		e.ctl(t, "origins", "add", "acme", "https://other.example.com")
		waitText(ctx, t, "#notice", "while you were editing")
		// The edit is still there, based on the old etag.
		methods, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#methods")))
		if err != nil {
			t.Fatal(err)
		}
		if methods != "PUT, DELETE" {
			t.Errorf("methods input = %q, want the unsaved edit", methods)
		}
		run(ctx, t, chromedp.Click(chromedp.CSS("#save-settings")))
		text := waitText(ctx, t, "#settings-error", "changed by ci at ")
		if !strings.Contains(text, "reload") {
			t.Errorf("stale explanation %q does not say to reload", text)
		}
		e.shot(t, ctx, "stale-edit")
		out := e.ctl(t, "policies", "get", "acme", "-o", "json")
		if strings.Contains(out, "DELETE") {
			t.Errorf("the stale edit was stored:\n%s", out)
		}
		run(ctx, t, chromedp.Click(chromedp.CSS("#stale-reload")))
		waitText(ctx, t, "#origins", "https://other.example.com")
		run(ctx, t, fill("#methods", ""), chromedp.SendKeys(chromedp.CSS("#methods"), "PUT, DELETE"),
			fill("#max-age", "600"), fill("#mode", "MODE_REPORT_ONLY"), chromedp.Click(chromedp.CSS("#save-settings")))
		waitText(ctx, t, "#notice", "Saved")
		out = e.ctl(t, "policies", "get", "acme", "-o", "json")
		if !strings.Contains(out, "DELETE") || !strings.Contains(out, "REPORT_ONLY") {
			t.Errorf("the edit after reload was not stored:\n%s", out)
		}
		// Back to enforce, for the request tester.
		run(ctx, t, fill("#mode", "MODE_ENFORCE"), chromedp.Click(chromedp.CSS("#save-settings")))
		waitText(ctx, t, "#audit", "mode: report-only → enforce")
	})

	step("the audit log shows who changed what", func(t *testing.T) {
		text := waitText(ctx, t, "#audit", "allowed methods")
		for _, want := range []string{"alice", "ci", "origin https://app.example.com (with credentials) — the web app", "origin https://live.example.com (without credentials) — added by CI", "max age: (unset) → 600s"} {
			if !strings.Contains(text, want) {
				t.Errorf("audit log lacks %q:\n%s", want, text)
			}
		}
		run(ctx, t, chromedp.ScrollIntoView(chromedp.CSS("#audit-h")))
		e.shot(t, ctx, "audit")
	})

	step("test a request", func(t *testing.T) {
		run(ctx, t,
			fill("#t-origin", "https://app.example.com"),
			fill("#t-method", "OPTIONS"),
			fill("#t-acrm", "PUT"),
			js(`document.querySelector("#t-credentials").checked = true`),
			chromedp.Click(chromedp.CSS("#t-run")),
		)
		waitText(ctx, t, "#t-verdict", "Allowed")
		headers := waitText(ctx, t, "#t-headers", "Access-Control-Allow-Origin: https://app.example.com")
		for _, want := range []string{"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Methods: PUT", "Access-Control-Max-Age: 600"} {
			if !strings.Contains(headers, want) {
				t.Errorf("headers lack %q:\n%s", want, headers)
			}
		}
		waitText(ctx, t, "#t-credentials-verdict", "lets the page read")
		run(ctx, t, chromedp.ScrollIntoView(chromedp.CSS("#test-h")))
		e.shot(t, ctx, "test-allowed")
		run(ctx, t, fill("#t-origin", "https://evil.example"), chromedp.Click(chromedp.CSS("#t-run")))
		waitText(ctx, t, "#t-verdict", "Refused")
		waitText(ctx, t, "#t-reason", "origin https://evil.example is not in policies/acme")
		e.shot(t, ctx, "test-refused")
	})

	step("remove with confirmation", func(t *testing.T) {
		run(ctx, t, js(`location.hash = "#/"`), chromedp.WaitVisible(chromedp.CSS("#policies")),
			js(`location.hash = "#/policies/acme"`), chromedp.WaitVisible(chromedp.CSS("#origins")),
			chromedp.Click(chromedp.CSS(`button.remove[data-pattern="https://other.example.com"]`)),
			chromedp.WaitVisible(chromedp.CSS("#confirm-remove")))
		e.shot(t, ctx, "remove-confirm")
		run(ctx, t, chromedp.Click(chromedp.CSS("#confirm-remove")))
		_ = poll(ctx, propagateWithin, func() (bool, error) {
			return !exists(ctx, t, `#origins tr[data-pattern="https://other.example.com"]`), nil
		})
		if exists(ctx, t, `#origins tr[data-pattern="https://other.example.com"]`) {
			t.Error("the removed origin is still listed")
		}
		if out := e.ctl(t, "origins", "list", "acme"); strings.Contains(out, "other.example.com") {
			t.Errorf("the removed origin is still stored:\n%s", out)
		}
	})

	step("narrow window", func(t *testing.T) {
		run(ctx, t, chromedp.EmulateViewport(380, 800))
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
		if err != nil {
			t.Fatal(err)
		}
		if wide {
			t.Error("the policy page scrolls sideways in a 380 px window")
		}
		// The viewport as the user sees it (a full-page capture lays the
		// page out again at another width).
		e.shotOf(t, ctx, "narrow", chromedp.CaptureScreenshot())
		run(ctx, t, chromedp.EmulateViewport(1100, 900))
	})

	step("a read-only token cannot write", func(t *testing.T) {
		run(ctx, t, chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
		e.signIn(ctx, t, viewerToken)
		waitText(ctx, t, "#who", "read-only")
		run(ctx, t, js(`location.hash = "#/policies/acme"`), chromedp.WaitVisible(chromedp.CSS("#readonly")))
		for _, sel := range []string{"#add-origin", "button.remove", "#save-settings", "#new-policy"} {
			if exists(ctx, t, sel) {
				t.Errorf("read-only console shows %s", sel)
			}
		}
		disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#methods").disabled`))
		if err != nil || !disabled {
			t.Errorf("methods input enabled for a read-only token (err %v)", err)
		}
		// Without the check scope the viewer cannot watch: its console
		// follows the change log.
		waitText(ctx, t, "#live", "polling")
		e.ctl(t, "origins", "add", "acme", "https://polled.example.com")
		waitText(ctx, t, "#origins", "https://polled.example.com")
		e.shot(t, ctx, "read-only")
		// Even a hand-made call from the console page is refused.
		code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`import("./api.js").then(api => api.call("PolicyService", "AddOrigin", {policy: "policies/acme", origin: {pattern: "https://sneaky.example"}}).then(() => "stored", e => e.code))`, chromedp.EvalAwaitPromise))
		if err != nil || code != "permission_denied" {
			t.Errorf("AddOrigin with the read-only token: %q, %v; want permission_denied", code, err)
		}
	})

	step("a revoked token signs the console out", func(t *testing.T) {
		run(ctx, t, js(`sessionStorage.setItem("corsd.token", "revoked-token-0123456789")`), chromedp.Click(chromedp.CSS("#t-run")))
		waitText(ctx, t, "#signin-error", "no longer accepted")
	})

	step("a page on an untrusted origin cannot call the API", func(t *testing.T) {
		api := "http://" + e.corsd.HTTPAddr + "/corsd.v1.PolicyService/ListPolicies"
		for _, spec := range []fetchSpec{
			// With a token it somehow knows: the preflight is refused.
			{URL: api, Method: http.MethodPost, Headers: map[string]string{"Authorization": "Bearer " + aliceToken, "Content-Type": "application/json"}},
			// With the browser's ambient credentials: there are none to use.
			{URL: api, Method: http.MethodPost, Credentials: "include"},
			{URL: api, Method: http.MethodPost, Headers: map[string]string{"Content-Type": "text/plain"}},
		} {
			res, err := e.b.fetch(ctx, e.evil, spec)
			if err != nil {
				t.Fatal(err)
			}
			if res.Readable {
				t.Errorf("fetch(%+v) from %s: readable (status %d, body %q)", spec, e.evil, res.Status, res.Body)
			}
			if errs := e.b.waitCORSError(ctx, api); len(errs) == 0 {
				t.Errorf("fetch(%+v) from %s: no CORS error reported", spec, e.evil)
			}
		}
		e.shot(t, ctx, "untrusted-origin")
		// The console's token never left its origin: the untrusted page's
		// storage is its own.
		if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("corsd.token") || ""`)); got != "" {
			t.Errorf("the untrusted page reads a token %q", got)
		}
	})
}
