package server

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// agreementCase is one request, asked through CheckOrigin and through
// ext_authz Check.
type agreementCase struct {
	name   string
	policy string // CheckOrigin policy / context_extensions["corsd_policy"]; empty: by host
	method string
	host   string
	origin string
	acrm   string
	acrh   string
	acrpn  string
	sfs    string
}

// TestCheckOriginAndExtAuthzAgree asks the same questions of the three
// enforcement paths (CheckOrigin, ext_authz, the SDK middleware) of one real server and requires the same answer: allowed, the reply
// status, the exact headers with their append semantics, kind and reason.
func TestCheckOriginAndExtAuthzAgree(t *testing.T) {
	e := newTokenEnv(t, WithDecisionRecord(DecisionRecordFull)) // the record compared below
	e.create("acme", &corsdv1.Policy{
		Origins: []*corsdv1.OriginRule{
			{Pattern: "https://app.example.com", AllowCredentials: true},
			{Pattern: "https://*.acme.example"},
		},
		AllowedMethods:         []string{"GET", "PUT"},
		AllowedRequestHeaders:  []string{"content-type", "authorization"},
		ExposedResponseHeaders: []string{"x-request-id"},
		MaxAge:                 durationpb.New(600e9),
		AllowPrivateNetwork:    true,
		Hosts:                  []string{"api.example.com"},
		CrossOriginProtection:  true,
	})
	e.create("public", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "*"}}, Hosts: []string{"*.public.example"}})
	e.create("report", &corsdv1.Policy{
		Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}, Mode: corsdv1.Mode_MODE_REPORT_ONLY,
		Hosts: []string{"report.example.com"}, CrossOriginProtection: true,
	})
	e.create("off", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}, Mode: corsdv1.Mode_MODE_DISABLED})

	const app, evil = "https://app.example.com", "https://evil.example"
	tests := []agreementCase{
		{name: "actual allowed with credentials", policy: "acme", method: "GET", host: "api.example.com", origin: app},
		{name: "actual allowed by wildcard", policy: "acme", method: "GET", host: "api.example.com", origin: "https://a.b.acme.example"},
		{name: "wildcard never matches the apex", policy: "acme", method: "GET", host: "api.example.com", origin: "https://acme.example"},
		{name: "look-alike suffix", policy: "acme", method: "GET", host: "api.example.com", origin: "https://a.acme.example.evil.example"},
		{name: "actual refused", policy: "acme", method: "GET", host: "api.example.com", origin: evil},
		{name: "no origin", policy: "acme", method: "GET", host: "api.example.com"},
		{name: "origin with a path", policy: "acme", method: "GET", host: "api.example.com", origin: app + "/"},
		{name: "origin with the default port", policy: "acme", method: "GET", host: "api.example.com", origin: app + ":443"},
		{name: "upper-case origin", policy: "acme", method: "GET", host: "api.example.com", origin: "https://APP.example.com"},
		{name: "merged origins", policy: "acme", method: "GET", host: "api.example.com", origin: app + ", " + evil},
		{name: "preflight allowed", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: app, acrm: "PUT", acrh: "authorization,content-type"},
		{name: "preflight with private network", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: app, acrm: "PUT", acrpn: "true"},
		{name: "preflight safelisted method", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: "https://x.acme.example", acrm: "POST"},
		{name: "preflight method refused", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: app, acrm: "DELETE"},
		{name: "preflight header refused", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: app, acrm: "PUT", acrh: "x-debug"},
		{name: "preflight malformed headers", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: app, acrm: "PUT", acrh: "a b"},
		{name: "preflight origin refused", policy: "acme", method: "OPTIONS", host: "api.example.com", origin: evil, acrm: "PUT"},
		{name: "cross-site post refused", policy: "acme", method: "POST", host: "api.example.com", origin: evil, sfs: "cross-site"},
		{name: "cross-site post trusted", policy: "acme", method: "POST", host: "api.example.com", origin: app, sfs: "cross-site"},
		{name: "cross-origin without fetch metadata", policy: "acme", method: "DELETE", host: "api.example.com", origin: evil},
		{name: "same-origin post", policy: "acme", method: "POST", host: "api.example.com", origin: "https://api.example.com", sfs: "same-origin"},
		{name: "selected by host", method: "GET", host: "api.example.com", origin: app},
		{name: "selected by host with port", method: "GET", host: "api.example.com:8443", origin: app},
		{name: "selected by wildcard host", method: "GET", host: "eu.public.example", origin: evil},
		{name: "any origin preflight", method: "OPTIONS", host: "eu.public.example", origin: evil, acrm: "GET"},
		{name: "no policy", method: "GET", host: "unknown.example", origin: app},
		{name: "no policy preflight", method: "OPTIONS", host: "unknown.example", origin: app, acrm: "PUT"},
		{name: "report-only refusal", policy: "report", method: "GET", host: "report.example.com", origin: evil},
		{name: "report-only cross-site post", policy: "report", method: "POST", host: "report.example.com", origin: evil, sfs: "cross-site"},
		{name: "report-only preflight", policy: "report", method: "OPTIONS", host: "report.example.com", origin: app, acrm: "GET"},
		{name: "disabled", policy: "off", method: "GET", host: "api.example.com", origin: app},
	}
	authz := authv3.NewAuthorizationClient(e.conn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.check(tt.checkOriginRequest())
			resp, err := authz.Check(e.admin(), tt.checkRequest())
			if err != nil {
				t.Fatalf("ext_authz Check: %v", err)
			}
			got := summarize(t, resp)

			// Decision and metadata: the same verdict, named the same way.
			wantMeta := map[string]any{
				"kind":        strings.TrimPrefix(d.GetKind().String(), "DECISION_KIND_"),
				"allowed":     d.GetAllowed(),
				"reason":      strings.TrimPrefix(d.GetReason().String(), "REASON_"),
				"report_only": d.GetMode() == corsdv1.Mode_MODE_REPORT_ONLY,
			}
			gotMeta := map[string]any{}
			for k := range wantMeta {
				gotMeta[k] = got.Meta[k]
			}
			if diff := cmp.Diff(wantMeta, gotMeta); diff != "" {
				t.Errorf("decision metadata mismatch (-CheckOrigin +ext_authz):\n%s", diff)
			}

			// What Envoy does must be what CheckOrigin tells an enforcement
			// point to do; report-only changes nothing.
			var wantDenied int
			var wantHeaders []authzHdr
			if d.GetMode() != corsdv1.Mode_MODE_REPORT_ONLY {
				wantDenied = int(d.GetReplyStatus())
				for _, h := range d.GetResponseHeaders() {
					act := actOverwrite
					if h.GetAppend() {
						act = actAppend
					}
					wantHeaders = append(wantHeaders, authzHdr{Key: strings.ToLower(h.GetName()), Value: h.GetValue(), Action: act})
				}
			}
			if got.Denied != wantDenied {
				t.Errorf("ext_authz denied status %d, CheckOrigin reply_status %d (decision %v)", got.Denied, wantDenied, d)
			}
			for i := range got.Headers {
				got.Headers[i].Key = strings.ToLower(got.Headers[i].Key)
			}
			if diff := cmp.Diff(wantHeaders, got.Headers); diff != "" {
				t.Errorf("headers mismatch (-CheckOrigin +ext_authz):\n%s", diff)
			}

			// The third path: the SDK middleware deciding from the same
			// compiled policies must produce the same observable response.
			name := ""
			if tt.policy != "" {
				name = "policies/" + tt.policy
			} else if pe := e.srv.live.cur.Load().lookup("", tt.host); pe != nil {
				name = pe.name
			}
			hdr := map[string]string{"Origin": tt.origin, "Access-Control-Request-Method": tt.acrm, "Access-Control-Request-Headers": tt.acrh,
				"Access-Control-Request-Private-Network": tt.acrpn, "Sec-Fetch-Site": tt.sfs}
			agreeObserved(t, tt.name, observeCheckOrigin(d), observeExtAuthz(resp),
				observeMiddleware(name, snapshotSource{e.srv}, httpRequest(tt.method, tt.host, hdr)))
		})
	}
}

func (c agreementCase) checkOriginRequest() *corsdv1.CheckOriginRequest {
	req := &corsdv1.CheckOriginRequest{
		Host: c.host, Method: c.method, Origin: c.origin,
		AccessControlRequestMethod: c.acrm, AccessControlRequestHeaders: c.acrh,
		AccessControlRequestPrivateNetwork: c.acrpn, SecFetchSite: c.sfs,
	}
	if c.policy != "" {
		req.Policy = "policies/" + c.policy
	}
	return req
}

// checkRequest builds the CheckRequest Envoy would send for the case.
func (c agreementCase) checkRequest() *authv3.CheckRequest {
	h := map[string]string{}
	for k, v := range map[string]string{
		"origin": c.origin, "access-control-request-method": c.acrm, "access-control-request-headers": c.acrh,
		"access-control-request-private-network": c.acrpn, "sec-fetch-site": c.sfs,
	} {
		if v != "" {
			h[k] = v
		}
	}
	req := authzHeaderReq(c.method, c.host, h)
	if c.policy != "" {
		req = withExtensions(req, map[string]string{"corsd_policy": c.policy})
	}
	return req
}
