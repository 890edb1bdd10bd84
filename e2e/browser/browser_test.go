package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// TestBrowser starts the whole system once (Chromium, corsd, the API behind
// the SDK and behind the ext_authz emulator) and runs every case against
// both APIs. Run one case with -run 'TestBrowser/preflight/envoy'.
func TestBrowser(t *testing.T) {
	e := newEnv(t)
	t.Run("simple GET", e.testSimpleGet)
	t.Run("credentials", e.testCredentials)
	t.Run("preflight", e.testPreflight)
	t.Run("exposed headers", e.testExposedHeaders)
	t.Run("live change", e.testLiveChange)
	t.Run("cross-origin protection", e.testCrossOriginProtection)
	t.Run("report-only", e.testReportOnly)
}

// fetchCase is one fetch() from a page and what the browser must make of it.
type fetchCase struct {
	name        string
	from        string // page host: hostApp, hostAdmin or hostEvil
	path        string
	method      string
	headers     map[string]string
	credentials string
	// readable: the script can read the response. Otherwise the promise
	// rejects with a TypeError and Chromium reports corsError.
	readable  bool
	corsError string
	// handlerRan: the API handler served the request (CORS stops reading,
	// not sending, so a refused simple request still runs it; a refused
	// preflight must keep the actual request away from it).
	handlerRan bool
	// cookieSent: when the handler ran, it received the session cookie.
	cookieSent bool
	// preflightStatus: the status of the preflight, 0 when none is expected.
	preflightStatus int
}

// run makes the page of tc.from fetch a fresh URL of a and checks what the
// script saw, what Chromium reported, and what reached the API.
func (e *env) run(t *testing.T, ctx context.Context, a api, tc fetchCase) (fetchResult, string) {
	t.Helper()
	u, id := e.url(a, tc.path)
	spec := fetchSpec{URL: u, Method: tc.method, Headers: tc.headers, Credentials: tc.credentials}
	res, err := e.b.fetch(ctx, e.origins[tc.from], spec)
	if err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("fetch(%s %s, credentials=%q, headers=%v) from %s", orGET(tc.method), u, tc.credentials, tc.headers, e.origins[tc.from])
	if res.Readable != tc.readable {
		t.Errorf("%s: readable = %v, want %v\nresult: %+v\nChromium's CORS errors: %v\naccess log: %+v", desc, res.Readable, tc.readable, res, e.b.corsErrorsOf(u), e.j.hitsOf(id))
	}
	if tc.readable && res.Readable && res.Status != http.StatusOK {
		t.Errorf("%s: status %d, want 200; body %q", desc, res.Status, res.Body)
	}
	if !tc.readable && !res.Readable {
		if res.ErrorName != "TypeError" {
			t.Errorf("%s: rejected with %s (%s), want a TypeError", desc, res.ErrorName, res.Error)
		}
		if errs := e.b.waitCORSError(ctx, u); !slices.Contains(errs, tc.corsError) {
			t.Errorf("%s: Chromium's CORS errors = %v, want %s", desc, errs, tc.corsError)
		}
	}

	calls := e.j.callsOf(id)
	actual := slices.DeleteFunc(slices.Clone(calls), func(c call) bool { return c.Method != orGET(tc.method) })
	switch {
	case tc.handlerRan && len(actual) != 1:
		t.Errorf("%s: the API handler ran the request %d times, want once: %+v", desc, len(actual), calls)
	case !tc.handlerRan && len(calls) != 0:
		t.Errorf("%s: the API handler ran, want never: %+v", desc, calls)
	case tc.handlerRan:
		want := ""
		if tc.cookieSent {
			want = "user-of-" + a.name
		}
		if actual[0].Session != want {
			t.Errorf("%s: the API handler got session %q, want %q; cookies Chromium did not send: %v", desc, actual[0].Session, want, e.b.blockedCookiesOf(u))
		}
		// What the script read is the handler's answer for this caller.
		var rep reply
		if res.Readable && (json.Unmarshal([]byte(res.Body), &rep) != nil || rep.ID != id || rep.User != want) {
			t.Errorf("%s: the script read %q, want the API's reply for id %s and user %q", desc, res.Body, id, want)
		}
	}

	hits := e.waitHits(ctx, id, func(hs []hit) bool {
		return len(hs) > 0 && (tc.preflightStatus == 0 || slices.ContainsFunc(hs, isPreflight))
	})
	if tc.preflightStatus != 0 {
		i := slices.IndexFunc(hits, isPreflight)
		switch {
		case i < 0:
			t.Errorf("%s: no preflight reached the API's server; access log %+v", desc, hits)
		case hits[i].Status != tc.preflightStatus:
			t.Errorf("%s: preflight answered %d, want %d", desc, hits[i].Status, tc.preflightStatus)
		}
	} else if slices.ContainsFunc(hits, isPreflight) {
		t.Errorf("%s: Chromium sent a preflight, want none; access log %+v", desc, hits)
	}
	return res, id
}

func isPreflight(h hit) bool { return h.Method == http.MethodOptions }

func orGET(m string) string {
	if m == "" {
		return http.MethodGet
	}
	return m
}

// waitHits polls the access log for the request with id until done holds
// (the entry is written once the response is sent, so it can trail what the
// browser saw).
func (e *env) waitHits(ctx context.Context, id string, done func([]hit) bool) []hit {
	var hs []hit
	_ = poll(ctx, 5*time.Second, func() (bool, error) {
		hs = e.j.hitsOf(id)
		return done(hs), nil
	})
	return hs
}

// forEachAPI runs f as one subtest per API, with a bounded context.
func (e *env) forEachAPI(t *testing.T, f func(t *testing.T, ctx context.Context, a api)) {
	for _, a := range e.apis {
		t.Run(a.name, func(t *testing.T) { f(t, e.ctx(t), a) })
	}
}

func (e *env) runTable(t *testing.T, tests []fetchCase) {
	e.forEachAPI(t, func(t *testing.T, ctx context.Context, a api) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) { e.run(t, ctx, a, tc) })
		}
	})
}

func (e *env) testSimpleGet(t *testing.T) {
	e.runTable(t, []fetchCase{
		{name: "trusted origin reads", from: hostApp, path: "/p/main/items", readable: true, handlerRan: true},
		{name: "second trusted origin reads", from: hostAdmin, path: "/p/main/items", readable: true, handlerRan: true},
		{
			name: "untrusted origin is blocked", from: hostEvil, path: "/p/main/items",
			corsError: "MissingAllowOriginHeader", handlerRan: true,
		},
	})
}

func (e *env) testCredentials(t *testing.T) {
	e.runTable(t, []fetchCase{
		{
			name: "origin allowed credentials reads with the cookie", from: hostApp, path: "/p/main/me", credentials: "include",
			readable: true, handlerRan: true, cookieSent: true,
		},
		{
			// corsd answers Access-Control-Allow-Origin but no
			// -Allow-Credentials: the cookie was sent, the response is not
			// readable.
			name: "trusted origin without credentials is blocked", from: hostAdmin, path: "/p/main/me", credentials: "include",
			corsError: "InvalidAllowCredentials", handlerRan: true, cookieSent: true,
		},
		{
			name: "trusted origin without credentials reads when it sends none", from: hostAdmin, path: "/p/main/me", credentials: "omit",
			readable: true, handlerRan: true,
		},
		{
			name: "untrusted origin is blocked", from: hostEvil, path: "/p/main/me", credentials: "include",
			corsError: "MissingAllowOriginHeader", handlerRan: true, cookieSent: true,
		},
	})
}

func (e *env) testPreflight(t *testing.T) {
	key := map[string]string{"X-Api-Key": "k-123"}
	e.runTable(t, []fetchCase{
		{
			name: "allowed method and header", from: hostApp, path: "/p/main/items/1", method: "PUT", headers: key,
			readable: true, handlerRan: true, preflightStatus: http.StatusNoContent,
		},
		{
			name: "allowed method and header with credentials", from: hostApp, path: "/p/main/items/2", method: "PUT", headers: key, credentials: "include",
			readable: true, handlerRan: true, cookieSent: true, preflightStatus: http.StatusNoContent,
		},
		{
			name: "second trusted origin", from: hostAdmin, path: "/p/main/items/3", method: "PUT", headers: key,
			readable: true, handlerRan: true, preflightStatus: http.StatusNoContent,
		},
		{
			name: "method not allowed", from: hostApp, path: "/p/main/items/4", method: "PATCH", headers: key,
			corsError: "PreflightMissingAllowOriginHeader", preflightStatus: http.StatusForbidden,
		},
		{
			name: "method not allowed without custom header", from: hostApp, path: "/p/main/items/5", method: "DELETE",
			corsError: "PreflightMissingAllowOriginHeader", preflightStatus: http.StatusForbidden,
		},
		{
			name: "header not allowed", from: hostApp, path: "/p/main/items/6", method: "PUT", headers: map[string]string{"X-Debug": "1"},
			corsError: "PreflightMissingAllowOriginHeader", preflightStatus: http.StatusForbidden,
		},
		{
			name: "untrusted origin", from: hostEvil, path: "/p/main/items/7", method: "PUT", headers: key,
			corsError: "PreflightMissingAllowOriginHeader", preflightStatus: http.StatusForbidden,
		},
	})
}

func (e *env) testExposedHeaders(t *testing.T) {
	tests := []struct {
		name    string
		from    string
		path    string
		exposed map[string]bool // header -> readable from JS
	}{
		{
			name: "exposed by the policy", from: hostApp, path: "/p/main/cost",
			exposed: map[string]bool{"X-Request-Cost": true, "X-Internal-Trace": false, "Content-Type": true},
		},
		{
			name: "exposed to the second trusted origin", from: hostAdmin, path: "/p/main/cost",
			exposed: map[string]bool{"X-Request-Cost": true, "X-Internal-Trace": false},
		},
		{
			name: "policy exposes nothing", from: hostApp, path: "/p/live/cost",
			exposed: map[string]bool{"X-Request-Cost": false, "X-Internal-Trace": false, "Content-Type": true},
		},
	}
	e.forEachAPI(t, func(t *testing.T, ctx context.Context, a api) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				u, _ := e.url(a, tc.path)
				spec := fetchSpec{URL: u}
				for h := range tc.exposed {
					spec.Read = append(spec.Read, h)
				}
				res, err := e.b.fetch(ctx, e.origins[tc.from], spec)
				if err != nil {
					t.Fatal(err)
				}
				if !res.Readable {
					t.Fatalf("fetch(%s) from %s: not readable: %+v; Chromium's CORS errors %v", u, tc.from, res, e.b.corsErrorsOf(u))
				}
				for h, exposed := range tc.exposed {
					wire, onWire := e.b.responseHeader(u, h)
					if !onWire {
						t.Errorf("%s: the response carried no %s; the case proves nothing", u, h)
						continue
					}
					got := res.Headers[h]
					switch {
					case exposed && (got == nil || *got != wire):
						t.Errorf("%s: JS read %s = %v, want %q", u, h, deref(got), wire)
					case !exposed && got != nil:
						t.Errorf("%s: JS read %s = %q, want null (not exposed)", u, h, *got)
					}
				}
			})
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *s)
}

// liveCycles is how many AddOrigin/RemoveOrigin rounds testLiveChange
// measures per API.
const liveCycles = 5

// testLiveChange adds admin.test to policies/live through the admin API and
// measures the time from AddOrigin returning to the first fetch the browser
// lets admin.test read, then the same for RemoveOrigin and the first fetch
// it blocks, liveCycles times. Every fetch uses a fresh URL and the policy's
// max_age is 0, so no preflight or HTTP cache hides a change; the fetches
// are simple GETs, polled back to back.
func (e *env) testLiveChange(t *testing.T) {
	admin := e.origins[hostAdmin]
	name := "policies/" + polLive
	e.forEachAPI(t, func(t *testing.T, ctx context.Context, a api) {
		// until fetches from admin.test until the result is readable ==
		// want. It returns the time from since to the end of that fetch,
		// the time from since to its arrival at the API's server (when the
		// decision was made), and the number of fetches.
		until := func(want bool, since time.Time) (seen, decided time.Duration, n int) {
			for n = 1; ; n++ {
				u, id := e.url(a, "/p/live/items")
				res, err := e.b.fetch(ctx, admin, fetchSpec{URL: u})
				if err != nil {
					t.Fatal(err)
				}
				if res.Readable == want {
					seen = time.Since(since)
					hs := e.waitHits(ctx, id, func(hs []hit) bool { return len(hs) > 0 })
					if len(hs) == 0 {
						t.Fatalf("%s: no access log entry for %s", a.name, u)
					}
					return seen, hs[0].Arrived.Sub(since), n
				}
				if time.Since(since) > propagateWithin {
					t.Fatalf("%s: admin.test readable=%v still %v after the admin call", a.name, !want, propagateWithin)
				}
			}
		}
		if _, _, n := until(false, time.Now()); n != 1 {
			t.Fatalf("admin.test could read %s before AddOrigin; the case needs it refused first", name)
		}
		var adds, removes []time.Duration
		var addN, removeN int
		var maxDecided time.Duration
		for range liveCycles {
			if _, err := e.admin.AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: name, Origin: &corsdv1.OriginRule{Pattern: admin, Description: "added live"}}); err != nil {
				t.Fatalf("AddOrigin(%s, %s): %v", name, admin, err)
			}
			added := time.Now()
			t.Cleanup(func() { // in case the cycle fails before RemoveOrigin
				_, _ = e.admin.RemoveOrigin(context.Background(), &corsdv1.RemoveOriginRequest{Policy: name, Pattern: admin})
			})
			seen, decided, n := until(true, added)
			adds, addN, maxDecided = append(adds, seen), addN+n, max(maxDecided, decided)

			if _, err := e.admin.RemoveOrigin(ctx, &corsdv1.RemoveOriginRequest{Policy: name, Pattern: admin}); err != nil {
				t.Fatalf("RemoveOrigin(%s, %s): %v", name, admin, err)
			}
			seen, decided, n = until(false, time.Now())
			removes, removeN, maxDecided = append(removes, seen), removeN+n, max(maxDecided, decided)
		}
		t.Logf("%s: admin call returned -> first browser fetch showing the change, over %d cycles: AddOrigin median %v max %v (%d fetches); RemoveOrigin median %v max %v (%d fetches); the deciding request reached the API at most %v after the call",
			a.name, liveCycles, median(adds), slices.Max(adds).Round(time.Microsecond), addN, median(removes), slices.Max(removes).Round(time.Microsecond), removeN, maxDecided.Round(time.Microsecond))
	})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Microsecond)
}

// testCrossOriginProtection submits a real HTML form (a top-level POST
// navigation, which carries the SameSite=None session cookie) to a policy
// with cross_origin_protection on.
func (e *env) testCrossOriginProtection(t *testing.T) {
	e.forEachAPI(t, func(t *testing.T, ctx context.Context, a api) {
		const path = "/p/" + polCSRF + "/transfer"
		tests := []struct {
			name       string
			from       string
			wantStatus int
			wantRan    bool
		}{
			{name: "cross-site form is refused", from: hostEvil, wantStatus: http.StatusForbidden},
			{name: "trusted origin's form goes through", from: hostApp, wantStatus: http.StatusOK, wantRan: true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := e.j.countCalls(a.name, http.MethodPost, path)
				h := e.submit(t, ctx, a, tc.from, path)
				if h.Status != tc.wantStatus {
					t.Errorf("form POST from %s: status %d, want %d", tc.from, h.Status, tc.wantStatus)
				}
				if h.Origin != e.origins[tc.from] || h.SecFetchSite != "cross-site" {
					t.Errorf("form POST from %s: Origin %q, Sec-Fetch-Site %q; want %q, cross-site", tc.from, h.Origin, h.SecFetchSite, e.origins[tc.from])
				}
				// The forgery is real: the browser sent the victim's cookie.
				if want := "user-of-" + a.name; h.Session != want {
					t.Errorf("form POST from %s carried session %q, want %q", tc.from, h.Session, want)
				}
				got := e.j.countCalls(a.name, http.MethodPost, path) - before
				if want := map[bool]int{true: 1, false: 0}[tc.wantRan]; got != want {
					t.Errorf("form POST from %s: the API's side effect ran %d times, want %d", tc.from, got, want)
				}
			})
		}
	})
}

// submit makes the page of from submit a form to a fresh URL of a on path,
// and returns the access log entry of that POST.
func (e *env) submit(t *testing.T, ctx context.Context, a api, from, path string) hit {
	t.Helper()
	u, id := e.url(a, path)
	if err := e.b.submitForm(ctx, e.origins[from], u, map[string]string{"amount": "100", "to": "mallory"}); err != nil {
		t.Fatal(err)
	}
	hs := e.waitHits(ctx, id, func(hs []hit) bool { return len(hs) > 0 })
	if len(hs) != 1 || hs[0].Method != http.MethodPost {
		t.Fatalf("form POST %s from %s: access log %+v, want one POST", u, from, hs)
	}
	return hs[0]
}

// testReportOnly: with policies/report in report-only mode, the browser sees
// only what the API itself answers (it trusts evil.test, not app.test), and
// cross-origin protection refuses nothing. corsd records the decisions it
// would have applied: its own on the ext_authz path; on the SDK path, which
// decides locally, those the SDK's Reporter sent it (and the decision hook
// saw every one).
func (e *env) testReportOnly(t *testing.T) {
	evil := e.origins[hostEvil]
	pol := "policies/" + polReport
	type series struct{ kind, result, reason string }
	want := map[series]float64{
		{"actual", "refused", "origin_not_allowed"}:    1, // evil GET
		{"preflight", "refused", "origin_not_allowed"}: 1, // evil PUT's preflight
		{"actual", "refused", "cross_origin_refused"}:  2, // evil PUT, evil form POST
		{"actual", "allowed", "allowed"}:               1, // app GET
	}
	e.forEachAPI(t, func(t *testing.T, ctx context.Context, a api) {
		metrics := func(name string, extra map[string]string) map[series]float64 {
			m := map[series]float64{}
			for s := range want {
				labels := map[string]string{"policy": pol, "kind": s.kind, "result": s.result, "reason": s.reason}
				maps.Copy(labels, extra)
				v, err := e.corsd.metric(ctx, name, labels)
				if err != nil {
					t.Fatalf("scrape corsd's /metrics: %v", err)
				}
				m[s] = v
			}
			return m
		}
		delta := func(before, after map[series]float64) map[series]float64 {
			d := map[series]float64{}
			for s := range want {
				d[s] = after[s] - before[s]
			}
			return d
		}
		reportedOnly := map[string]string{"report_only": "true"}
		before := metrics("corsd_decisions_total", nil)
		beforeReported := metrics("corsd_reported_decisions_total", reportedOnly)

		_, idGet := e.run(t, ctx, a, fetchCase{
			from: hostEvil, path: "/p/report/items", readable: true, handlerRan: true,
		})
		_, idPut := e.run(t, ctx, a, fetchCase{
			from: hostEvil, path: "/p/report/items/1", method: "PUT", headers: map[string]string{"X-Api-Key": "k"},
			readable: true, handlerRan: true, preflightStatus: http.StatusNoContent,
		})
		// corsd did not answer the preflight: the API's own CORS code did.
		if !slices.ContainsFunc(e.j.callsOf(idPut), func(c call) bool { return c.Method == http.MethodOptions }) {
			t.Errorf("under report-only the preflight never reached the API: %+v", e.j.callsOf(idPut))
		}
		e.run(t, ctx, a, fetchCase{
			from: hostApp, path: "/p/report/items", corsError: "MissingAllowOriginHeader", handlerRan: true,
		})
		post := e.submit(t, ctx, a, hostEvil, "/p/report/transfer")
		if post.Status != http.StatusOK {
			t.Errorf("cross-site form POST under report-only: status %d, want 200", post.Status)
		}
		if n := len(e.j.callsOf(post.ID)); n != 1 {
			t.Errorf("cross-site form POST under report-only: the API ran %d times, want once", n)
		}

		own := delta(before, metrics("corsd_decisions_total", nil))
		switch a.name {
		case "envoy":
			if !maps.Equal(own, want) {
				t.Errorf("corsd_decisions_total{policy=%q} grew by %v, want %v", pol, own, want)
			}
			e.checkLog(t, ctx, "decision", map[string]string{
				"policy": pol, "mode": "REPORT_ONLY", "allowed": "false", "origin": evil,
				"reason": "CROSS_ORIGIN_REFUSED", "method": "POST", "kind": "ACTUAL",
			})
			e.checkLog(t, ctx, "decision", map[string]string{
				"policy": pol, "mode": "REPORT_ONLY", "allowed": "false", "origin": evil,
				"reason": "ORIGIN_NOT_ALLOWED", "method": "GET", "kind": "ACTUAL",
			})
		case "sdk":
			// The SDK decides locally: corsd decided nothing itself...
			for s, d := range own {
				if d != 0 {
					t.Errorf("corsd decided %v of the SDK's requests %+v; the SDK must decide locally", d, s)
				}
			}
			// ...and learns the SDK's decisions from its Reporter.
			var reported map[series]float64
			_ = poll(ctx, 5*time.Second, func() (bool, error) {
				reported = delta(beforeReported, metrics("corsd_reported_decisions_total", reportedOnly))
				return maps.Equal(reported, want), nil
			})
			if !maps.Equal(reported, want) {
				t.Errorf("corsd_reported_decisions_total{policy=%q,report_only=\"true\"} grew by %v, want %v", pol, reported, want)
			}
			for _, reason := range []string{"CROSS_ORIGIN_REFUSED", "ORIGIN_NOT_ALLOWED"} {
				e.checkLog(t, ctx, "reported decision", map[string]string{
					"policy": pol, "report_only": "true", "allowed": "false", "origin": evil,
					"reason": reason, "kind": "ACTUAL", "reporter": sdkReporter,
				})
			}
			checkHook := func(id string, kind policy.Kind, reason policy.Reason) {
				t.Helper()
				ds := e.j.decisionsOf(id)
				if !slices.ContainsFunc(ds, func(d decision) bool {
					return d.Policy == pol && d.Mode == policy.ModeReportOnly && !d.Allowed && d.Kind == kind && d.Reason == reason && d.Origin == evil
				}) {
					t.Errorf("SDK hook decisions for %s = %+v, want a report-only %v refusal of %s (%v)", id, ds, kind, evil, reason)
				}
			}
			checkHook(idGet, policy.KindActual, policy.ReasonOriginNotAllowed)
			checkHook(idPut, policy.KindPreflight, policy.ReasonOriginNotAllowed)
			checkHook(idPut, policy.KindActual, policy.ReasonCrossOriginRefused)
			checkHook(post.ID, policy.KindActual, policy.ReasonCrossOriginRefused)
		}
	})
}

// checkLog waits for a line with message msg and fields in corsd's log.
func (e *env) checkLog(t *testing.T, ctx context.Context, msg string, fields map[string]string) {
	t.Helper()
	var lines []map[string]any
	_ = poll(ctx, 5*time.Second, func() (bool, error) {
		lines = e.corsd.Logs().Match(msg, fields)
		return len(lines) > 0, nil
	})
	if len(lines) == 0 {
		var recent []string
		for _, m := range e.corsd.Logs().Match(msg, map[string]string{"policy": fields["policy"]}) {
			b, _ := json.Marshal(m)
			recent = append(recent, string(b))
		}
		t.Errorf("corsd logged no %q with %v; its %q lines for %s:\n%s", msg, fields, msg, fields["policy"], strings.Join(recent, "\n"))
	}
}
