package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// observed is what a browser and the protected handler see of one
// response, whichever enforcement point produced it.
type observed struct {
	// Handler: the protected handler (the upstream) was called.
	Handler bool
	// Status is the status of the answer when the handler was not called.
	Status int
	// Header holds every header the enforcement point set, keys canonical.
	Header http.Header
	Body   string
}

// observeCheckOrigin is what an enforcement point does with a
// CheckOrigin decision, following its documented contract.
func observeCheckOrigin(d *corsdv1.Decision) observed {
	o := observed{Handler: true, Header: http.Header{}}
	if d.GetMode() == corsdv1.Mode_MODE_REPORT_ONLY {
		return o
	}
	for _, h := range d.GetResponseHeaders() {
		o.Header.Add(h.GetName(), h.GetValue())
	}
	if s := int(d.GetReplyStatus()); s != 0 {
		o.Handler, o.Status, o.Body = false, s, d.GetReplyBody()
	}
	return o
}

// observeExtAuthz is what Envoy does with a CheckResponse (the response
// to the client carries the denied response, or the upstream's response
// with the headers added; the upstream here sets none).
func observeExtAuthz(resp *authv3.CheckResponse) observed {
	o := observed{Handler: true, Header: http.Header{}}
	hs := resp.GetOkResponse().GetResponseHeadersToAdd()
	if d := resp.GetDeniedResponse(); d != nil {
		o.Handler, o.Status, o.Body = false, int(d.GetStatus().GetCode()), d.GetBody()
		hs = d.GetHeaders()
	}
	for _, h := range hs {
		o.Header.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	return o
}

// observeMiddleware serves r through the SDK middleware enforcing name
// from src, with a handler that sets no header.
func observeMiddleware(name string, src client.PolicySource, r *http.Request) observed {
	called := false
	h := client.Middleware(name, src)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		called = true
		w.WriteHeader(http.StatusOK)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	o := observed{Handler: called, Header: rec.Header().Clone()}
	if !called {
		o.Status, o.Body = rec.Code, rec.Body.String()
	}
	return o
}

// httpRequest builds the request a browser would send.
func httpRequest(method, host string, headers map[string]string) *http.Request {
	if method == "" {
		method = http.MethodGet
	}
	r := httptest.NewRequest(http.MethodGet, "http://placeholder/v1/items", nil)
	r.Method, r.Host = method, host
	for k, v := range headers {
		if v != "" {
			r.Header.Set(k, v)
		}
	}
	return r
}

// snapshotSource is a client.PolicySource reading a server's live
// snapshot, so that the middleware decides from the very policies the
// server compiled.
type snapshotSource struct{ s *Server }

func (snapshotSource) Ready() bool { return true }
func (src snapshotSource) Policy(name string) *policy.Policy {
	if e := src.s.live.cur.Load().lookup(name, ""); e != nil {
		return e.pol
	}
	return nil
}

// agreeObserved fails t when the three paths differ.
func agreeObserved(t testing.TB, what string, check, authz, mw observed) {
	t.Helper()
	for _, c := range []struct {
		name string
		got  observed
	}{{"ext_authz", authz}, {"middleware", mw}} {
		if diff := cmp.Diff(check, c.got); diff != "" {
			t.Errorf("%s: observable response mismatch (-CheckOrigin +%s):\n%s", what, c.name, diff)
		}
	}
}

// FuzzEnforcementPathsAgree compiles a random valid policy, decides a
// random request with it, and renders the decision through CheckOrigin's
// API form, ext_authz and the SDK middleware: the status, every header,
// the body and whether the handler is called must be the same.
func FuzzEnforcementPathsAgree(f *testing.F) {
	f.Add(uint32(0), "OPTIONS", "https://app.example.com", "PUT", "content-type", "", "", "api.example.com")
	f.Add(uint32(0xffff), "POST", "https://evil.example", "", "", "", "cross-site", "api.example.com")
	f.Add(uint32(0x5a5a), "GET", "null", "", "", "", "", "")
	f.Add(uint32(0x1234), "OPTIONS", "https://a.b.example.org:8443", "PATCH", "authorization,x-b", "true", "", "x")
	f.Add(uint32(0x0f0f), "DELETE", "http://localhost:3000", "", "", "", "same-site", "localhost:3000")
	patterns := []string{"https://app.example.com", "https://*.example.org", "http://localhost:*", "*", "null", "https://*.example.org:8443", "http://127.0.0.1:8080"}
	methods := []string{"GET", "PUT", "PATCH", "*", "DELETE", "X-CUSTOM"}
	headers := []string{"content-type", "x-b", "*", "authorization", "x-request-id"}
	exposed := []string{"x-request-id", "*", "x-total"}
	a := newAuthzServer(nil)
	f.Fuzz(func(t *testing.T, bits uint32, method, origin, acrm, acrh, acrpn, sfs, host string) {
		bit := func(i int) bool { return bits&(1<<i) != 0 }
		c := policy.Config{Name: "policies/fuzz", Revision: 1}
		for i, p := range patterns {
			if bit(i) {
				creds := bit(i+7) && p != "*" && p != "null"
				c.Origins = append(c.Origins, policy.Origin{Pattern: p, AllowCredentials: creds})
			}
		}
		for i, m := range methods {
			if bit(14 + i%4) {
				c.AllowedMethods = append(c.AllowedMethods, m)
			}
		}
		for i, h := range headers {
			if bit(18 + i%4) {
				c.AllowedRequestHeaders = append(c.AllowedRequestHeaders, h)
			}
		}
		for i, h := range exposed {
			if bit(22 + i) {
				c.ExposedResponseHeaders = append(c.ExposedResponseHeaders, h)
			}
		}
		c.AllowPrivateNetwork, c.CrossOriginProtection = bit(25), bit(26)
		c.MaxAge, c.MaxAgeSet = 600e9, bit(27)
		c.Mode = policy.Mode(bits >> 28 % 3)
		if bit(31) {
			c.PreflightSuccessStatus, c.PreflightFailureStatus = 200, 400
		}
		p, err := policy.Compile(c)
		if err != nil {
			return // not a valid policy
		}
		// What a net/http server can receive: header values without
		// control characters, a valid method token.
		for _, v := range []string{origin, acrm, acrh, acrpn, sfs, host} {
			if strings.ContainsAny(v, "\r\n\x00") || strings.TrimSpace(v) != v || len(v) > 1024 {
				return
			}
		}
		if method == "" || !validMethod(method) {
			return
		}
		hdr := map[string]string{"Origin": origin, "Access-Control-Request-Method": acrm, "Access-Control-Request-Headers": acrh,
			"Access-Control-Request-Private-Network": acrpn, "Sec-Fetch-Site": sfs}
		r := policy.Request{Method: method, Host: host, Origin: origin, SecFetchSite: sfs}
		if method == http.MethodOptions && origin != "" {
			// The middleware reads preflight headers only where they count.
			r.AccessControlRequestMethod, r.AccessControlRequestHeaders, r.AccessControlRequestPrivateNetwork = acrm, acrh, acrpn
		}
		if method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions {
			r.SecFetchSite = ""
		}
		d := p.Check(r)
		check := observeCheckOrigin(decisionProto(&d))
		authz := observeExtAuthz(a.response(&d))
		mw := observeMiddleware(c.Name, client.StaticSource(p), httpRequest(method, host, hdr))
		agreeObserved(t, method+" "+origin, check, authz, mw)
		_ = context.Background()
	})
}

func validMethod(m string) bool {
	for i := range len(m) {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
