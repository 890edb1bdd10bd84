package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/corsd/corsd/internal/corsdtest"
)

// chromiumPath locates Chromium: chromium on PATH, then Debian's
// /usr/bin/chromium. A missing browser fails the suite: it must run in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const debian = "/usr/bin/chromium"
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return debian
	}
	t.Fatal("chromium not found on PATH nor at /usr/bin/chromium: run `make chromium` (installs Debian's chromium and chromium-driver)")
	return ""
}

// browser is one headless Chromium with one tab, and what the DevTools
// protocol told about the tab's network requests.
type browser struct {
	tab    context.Context // chromedp context of the tab
	output *corsdtest.Logs // Chromium's stdout and stderr

	mu         sync.Mutex
	urls       map[network.RequestID]string
	corsErrors map[string][]string            // URL -> CORS errors Chromium reported
	cookies    map[network.RequestID][]string // cookies not sent, "name: reasons"
	responses  map[string][]network.Headers   // URL -> headers of responses received

	// current is the origin whose page the tab shows; "" when unknown
	// (after a form navigation). Only the test goroutine uses it.
	current string
}

// chromiumFlags are the command line of the suite's Chromium.
//
//   - --host-resolver-rules maps every *.test name to 127.0.0.1, so each
//     server is a distinct origin (https://app.test:PORT) on loopback.
//   - --ignore-certificate-errors-spki-list trusts the suite's one
//     self-signed certificate, and only it: pages are secure contexts and
//     Secure; SameSite=None cookies work, as in production. It is narrower
//     than --ignore-certificate-errors, which would accept any certificate.
//   - Third-party cookies: Chromium 156 allows them by default (no
//     phase-out), also headless; the suite checks that the credentialed
//     request really carries the cookie, so a change of default fails
//     loudly instead of passing for the wrong reason.
//   - Local network access: every origin resolves to 127.0.0.1, so a page
//     and the API are both in the loopback address space and Chromium's
//     local network access checks (which guard public -> local requests)
//     do not apply; no flag is needed, and the suite fails with Chromium's
//     CORS error LocalNetworkAccessPermissionDenied if that ever changes.
func chromiumFlags(execPath, userDataDir, spki string, output *corsdtest.Logs) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(userDataDir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("host-resolver-rules", "MAP *.test 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.CombinedOutput(output),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// Pdeathsig: the kernel kills Chromium if the test binary dies
			// without its cleanup. Setpgid: Chromium's helper processes
			// share its process group, which cleanup can then end by id.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		}),
	}
}

// seedPreferences writes the profile's preferences before the first start:
// third-party cookies allowed (profile.cookie_controls_mode 0, Chromium's
// "Allow third-party cookies" setting). Headless Chromium 156 blocks them by
// default (the cookie is then withheld with the blocked reason
// UserPreferences), and a cross-site fetch with credentials: 'include' sends
// a cookie only when they are allowed: the credentials cases need it. The
// top-level form POSTs of the cross-origin protection cases are first-party
// and carry the cookie either way.
func seedPreferences(t *testing.T, userDataDir string) {
	t.Helper()
	prefs := map[string]any{"profile": map[string]any{"cookie_controls_mode": 0, "block_third_party_cookies": false}}
	data, err := json.Marshal(prefs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(userDataDir, "Default"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(userDataDir, "Default", "Preferences"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBrowser starts Chromium and opens its tab. It fails the test, with
// Chromium's output, when the browser does not start within startTimeout.
// Cleanup closes the browser gracefully, then kills whatever is left of
// its process group.
func startBrowser(t *testing.T, spki string) *browser {
	t.Helper()
	b := &browser{
		output:     &corsdtest.Logs{},
		urls:       map[network.RequestID]string{},
		corsErrors: map[string][]string{},
		cookies:    map[network.RequestID][]string{},
		responses:  map[string][]network.Headers{},
	}
	dir := t.TempDir()
	seedPreferences(t, dir)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(),
		chromiumFlags(chromiumPath(t), dir, spki, b.output)...)
	tab, tabCancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	b.tab = tab

	pid := 0
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(tab, stopTimeout)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Logf("closing Chromium: %v", err)
		}
		tabCancel()
		allocCancel() // kills Chromium if still running and waits for it
		if pid > 0 {
			// Helpers that outlived the browser process (ESRCH when none).
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})

	// The first Run on the tab's own context starts the browser; the tab
	// lives as long as that context, so the start is bounded by a timer
	// that kills the browser, not by a derived context.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(tab, chromedp.Navigate("about:blank")) }()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("cannot start Chromium (%s): %v\nChromium output:\n%s\nrun `make chromium` to (re)install it", chromiumPath(t), err, b.output)
		}
	case <-timer.C:
		allocCancel()
		t.Fatalf("Chromium did not start within %v\nChromium output:\n%s", startTimeout, b.output)
	}
	if c := chromedp.FromContext(tab); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		pid = c.Browser.Process().Pid
	}
	return b
}

// listen records the network events of the tab. It runs on chromedp's
// event goroutine and must not block.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.urls[ev.RequestID] = ev.Request.URL
	case *network.EventRequestWillBeSentExtraInfo:
		for _, c := range ev.AssociatedCookies {
			if len(c.BlockedReasons) > 0 && c.Cookie != nil {
				b.cookies[ev.RequestID] = append(b.cookies[ev.RequestID], fmt.Sprintf("%s: %v", c.Cookie.Name, c.BlockedReasons))
			}
		}
	case *network.EventResponseReceived:
		b.responses[ev.Response.URL] = append(b.responses[ev.Response.URL], ev.Response.Headers)
	case *network.EventLoadingFailed:
		if ev.CorsErrorStatus != nil {
			u := b.urls[ev.RequestID]
			b.corsErrors[u] = append(b.corsErrors[u], string(ev.CorsErrorStatus.CorsError))
		}
	}
}

// corsErrorsOf returns the CORS errors Chromium reported for url.
func (b *browser) corsErrorsOf(url string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.corsErrors[url]...)
}

// blockedCookiesOf returns the cookies Chromium did not send with requests
// to url, and why.
func (b *browser) blockedCookiesOf(url string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for id, u := range b.urls {
		if u == url {
			out = append(out, b.cookies[id]...)
		}
	}
	return out
}

// waitCORSError waits until Chromium reported a CORS error for url (the
// DevTools event may trail the rejected promise) and returns the errors.
func (b *browser) waitCORSError(ctx context.Context, url string) []string {
	var errs []string
	_ = poll(ctx, 5*time.Second, func() (bool, error) {
		errs = b.corsErrorsOf(url)
		return len(errs) > 0, nil
	})
	return errs
}

// responseHeader returns the value of name in a response to url as the
// network layer received it (before CORS filtering), and whether it was
// there.
func (b *browser) responseHeader(url, name string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range b.responses[url] {
		for k, v := range h {
			if strings.EqualFold(k, name) {
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

// open shows the page of origin in the tab, unless it already does.
func (b *browser) open(ctx context.Context, origin string) error {
	if b.current == origin {
		return nil
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(origin+"/")); err != nil {
		return fmt.Errorf("navigate to %s: %w", origin, err)
	}
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof probe === "function" && window.isSecureContext`))
	if err != nil {
		return fmt.Errorf("page of %s: %w", origin, err)
	}
	if !ok {
		return fmt.Errorf("page of %s did not load its script or is not a secure context", origin)
	}
	b.current = origin
	return nil
}

// fetchSpec is one fetch() call made by a page.
type fetchSpec struct {
	URL         string            `json:"url"`
	Method      string            `json:"method,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Credentials string            `json:"credentials,omitempty"` // omit, same-origin (default), include
	Read        []string          `json:"read,omitempty"`        // response headers to read from JS
}

// fetchResult is what the page's script could see.
type fetchResult struct {
	Readable  bool               `json:"readable"`
	ErrorName string             `json:"errorName"` // TypeError when the browser refused it
	Error     string             `json:"error"`
	Status    int                `json:"status"`
	Headers   map[string]*string `json:"headers"`
	Body      string             `json:"body"`
}

// fetch runs spec from the page of origin.
func (b *browser) fetch(ctx context.Context, origin string, spec fetchSpec) (fetchResult, error) {
	if err := b.open(ctx, origin); err != nil {
		return fetchResult{}, err
	}
	arg, err := json.Marshal(spec)
	if err != nil {
		return fetchResult{}, err
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[fetchResult]("probe("+string(arg)+")", chromedp.EvalAwaitPromise))
	if err != nil {
		return fetchResult{}, fmt.Errorf("fetch %s from %s: %w", spec.URL, origin, err)
	}
	return res, nil
}

// submitForm makes the page of origin submit a POST form to action. The
// tab then navigates away, to the response.
func (b *browser) submitForm(ctx context.Context, origin, action string, fields map[string]string) error {
	if err := b.open(ctx, origin); err != nil {
		return err
	}
	a, err := json.Marshal(action)
	if err != nil {
		return err
	}
	f, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	b.current = ""
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("submitForm("+string(a)+", "+string(f)+")")); err != nil {
		return fmt.Errorf("submit form from %s: %w", origin, err)
	}
	// Wait until the tab shows the response (or Chromium's error page for an
	// empty 403): a navigation started while the form's is still in flight
	// is aborted (net::ERR_ABORTED).
	page, err := json.Marshal(origin + "/")
	if err != nil {
		return err
	}
	loaded := `location.href !== ` + string(page) + ` && document.readyState === "complete"`
	err = poll(ctx, navigateWithin, func() (bool, error) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](loaded))
		return err == nil && ok, nil // errors: the old document went away mid-call
	})
	if err != nil {
		return fmt.Errorf("form from %s: the tab did not show the response of %s: %w", origin, action, err)
	}
	return nil
}

// visit navigates the tab to url at the top level (to log in on a site).
func (b *browser) visit(ctx context.Context, url string) error {
	b.current = ""
	return chromedp.Do(ctx, chromedp.Navigate(url))
}
