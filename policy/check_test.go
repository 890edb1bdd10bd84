package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testConfigs are the policies the decision tests run against.
var testConfigs = map[string]Config{
	"acme": {
		Name:     "policies/acme",
		Revision: 3,
		Origins: []Origin{
			{Pattern: "https://app.example.com", AllowCredentials: true},
			{Pattern: "https://public.example.org"},
			{Pattern: "https://*.example.com"},
			{Pattern: "https://*.trusted.example.net", AllowCredentials: true},
			{Pattern: "https://api.trusted.example.net"},
			{Pattern: "http://localhost:*", AllowCredentials: true},
			{Pattern: "http://[::1]:8080"},
			{Pattern: "https://bücher.example"},
			{Pattern: "http://127.0.0.1:3000"},
		},
		AllowedMethods:         []string{"PUT", "PATCH", "delete"},
		AllowedRequestHeaders:  []string{"Content-Type", "X-Request-Id", "Authorization"},
		ExposedResponseHeaders: []string{"X-Request-Id", "X-Total"},
		MaxAge:                 10 * time.Minute,
		MaxAgeSet:              true,
	},
	// any answers "*" to everyone.
	"any": {
		Name:                   "policies/any",
		Origins:                []Origin{{Pattern: "*"}},
		AllowedMethods:         []string{"*"},
		AllowedRequestHeaders:  []string{"*"},
		ExposedResponseHeaders: []string{"*"},
	},
	// mixed has "*" and a credentialed origin.
	"mixed": {
		Name:                   "policies/mixed",
		Origins:                []Origin{{Pattern: "*"}, {Pattern: "https://app.example.com", AllowCredentials: true}},
		AllowedMethods:         []string{"*"},
		AllowedRequestHeaders:  []string{"*", "Authorization"},
		ExposedResponseHeaders: []string{"*", "X-Request-Id"},
		AllowPrivateNetwork:    true,
		PreflightSuccessStatus: 200,
		PreflightFailureStatus: 400,
	},
	"null": {
		Name:    "policies/null",
		Origins: []Origin{{Pattern: "null"}, {Pattern: "https://app.example.com"}},
	},
	"nomethods": {
		Name:    "policies/nomethods",
		Origins: []Origin{{Pattern: "https://app.example.com", AllowCredentials: true}},
	},
	"empty": {Name: "policies/empty"},
	"cop": {
		Name:                  "policies/cop",
		Origins:               []Origin{{Pattern: "https://app.example.com", AllowCredentials: true}, {Pattern: "*"}},
		CrossOriginProtection: true,
	},
	// wildany mixes "*" with wildcards, with and without credentials.
	"wildany": {
		Name: "policies/wildany",
		Origins: []Origin{
			{Pattern: "*"},
			{Pattern: "https://*.example.com"},
			{Pattern: "https://*.secure.example.com", AllowCredentials: true},
			{Pattern: "https://*.example.com:8443", AllowCredentials: true},
			{Pattern: "http://localhost:*"},
			{Pattern: "http://*.localhost", AllowCredentials: true},
		},
		MaxAge:    0,
		MaxAgeSet: true,
	},
	"copstrict": {
		Name:                  "policies/copstrict",
		Origins:               []Origin{{Pattern: "https://app.example.com"}, {Pattern: "null"}},
		CrossOriginProtection: true,
	},
	"disabled": {
		Name:    "policies/disabled",
		Origins: []Origin{{Pattern: "https://app.example.com"}},
		Mode:    ModeDisabled,
	},
}

// view is the part of a Decision the table compares.
type view struct {
	Kind    Kind
	Allowed bool
	Status  int
	Reason  Reason
	Detail  string
	Headers []Header
}

func viewOf(d Decision) view {
	v := view{Kind: d.Kind, Allowed: d.Allowed, Status: d.Status, Reason: d.Reason, Detail: d.Detail}
	if hs := d.Headers(); len(hs) > 0 {
		v.Headers = append([]Header(nil), hs...)
	}
	return v
}

func h(name, value string) Header { return Header{Name: name, Value: value} }

var (
	varyO  = Header{Name: "Vary", Value: "Origin", Append: true}
	varyPF = Header{Name: "Vary", Value: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network", Append: true}
)

func get(origin string) Request {
	return Request{Method: "GET", Host: "api.example.com", Origin: origin}
}

func preflight(origin, method, headers string) Request {
	return Request{Method: "OPTIONS", Host: "api.example.com", Origin: origin, AccessControlRequestMethod: method, AccessControlRequestHeaders: headers}
}

// ctText is the Content-Type of the body of answers to refused requests.
var ctText = h("Content-Type", "text/plain; charset=utf-8")

func refusedActual(r Reason) view {
	return view{Kind: KindActual, Reason: r, Headers: []Header{varyO}}
}

func refusedPreflight(status int, r Reason, detail string) view {
	return view{Kind: KindPreflight, Status: status, Reason: r, Detail: detail, Headers: []Header{varyPF}}
}

const acmeMethods = "PUT, PATCH, DELETE"

// checkTests is shared with FuzzCheck and the allocation test.
var checkTests = []struct {
	name   string
	policy string
	req    Request
	want   view
}{
	// Actual requests.
	{name: "exact origin with credentials", policy: "acme", req: get("https://app.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "exact origin without credentials", policy: "acme", req: get("https://public.example.org"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://public.example.org"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "wildcard one label", policy: "acme", req: get("https://a.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.example.com"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "wildcard several labels", policy: "acme", req: get("https://a.b.c.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.b.c.example.com"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "wildcard with underscore label", policy: "acme", req: get("https://a_b.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a_b.example.com"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "wildcard never matches the apex", policy: "acme", req: get("https://example.com"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard look-alike suffix", policy: "acme", req: get("https://a.example.com.evil.com"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard look-alike without dot", policy: "acme", req: get("https://evilexample.com"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard look-alike label", policy: "acme", req: get("https://a.evilexample.com"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard other port", policy: "acme", req: get("https://a.example.com:8443"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard other scheme", policy: "acme", req: get("http://a.example.com"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "wildcard trailing dot", policy: "acme", req: get("https://a.example.com."), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "credentialed wildcard", policy: "acme", req: get("https://x.y.trusted.example.net"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://x.y.trusted.example.net"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "exact rule under a credentialed wildcard gets credentials", policy: "acme", req: get("https://api.trusted.example.net"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://api.trusted.example.net"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "credentialed wildcard apex", policy: "acme", req: get("https://trusted.example.net"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "port wildcard", policy: "acme", req: get("http://localhost:5173"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "http://localhost:5173"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "port wildcard default port", policy: "acme", req: get("http://localhost"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "http://localhost"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "port wildcard other scheme", policy: "acme", req: get("https://localhost:5173"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "port wildcard other host", policy: "acme", req: get("http://localhost.evil.com:5173"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "IPv6", policy: "acme", req: get("http://[::1]:8080"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "http://[::1]:8080"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "IPv6 non-canonical", policy: "acme", req: get("http://[0:0::1]:8080"), want: refusedActual(ReasonOriginMalformed)},
	{name: "IPv6 other port", policy: "acme", req: get("http://[::1]:8081"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "IPv4", policy: "acme", req: get("http://127.0.0.1:3000"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "http://127.0.0.1:3000"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "IPv4 short form", policy: "acme", req: get("http://127.1:3000"), want: refusedActual(ReasonOriginMalformed)},
	{name: "IDN as browsers send it", policy: "acme", req: get("https://xn--bcher-kva.example"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://xn--bcher-kva.example"), h("Access-Control-Expose-Headers", "X-Request-Id, X-Total"), varyO,
	}}},
	{name: "IDN in Unicode", policy: "acme", req: get("https://bücher.example"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin with a path", policy: "acme", req: get("https://app.example.com/x"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin with a trailing slash", policy: "acme", req: get("https://app.example.com/"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin with the default port", policy: "acme", req: get("https://app.example.com:443"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin in upper case", policy: "acme", req: get("https://APP.example.com"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin scheme in upper case", policy: "acme", req: get("HTTPS://app.example.com"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin list", policy: "acme", req: get("https://app.example.com, https://evil.example"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin list without space", policy: "acme", req: get("https://app.example.com,https://evil.example"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin with whitespace", policy: "acme", req: get(" https://app.example.com"), want: refusedActual(ReasonOriginMalformed)},
	{name: "origin with userinfo", policy: "acme", req: get("https://evil@app.example.com"), want: refusedActual(ReasonOriginMalformed)},
	{name: "null not listed", policy: "acme", req: get("null"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "origin not allowed", policy: "acme", req: get("https://evil.example"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "extension origin", policy: "acme", req: get("chrome-extension://abcdef"), want: refusedActual(ReasonOriginNotAllowed)},
	{name: "no origin", policy: "acme", req: Request{Method: "GET", Host: "api.example.com"}, want: view{Kind: KindNotCORS, Reason: ReasonNoOrigin, Headers: []Header{varyO}}},
	{name: "OPTIONS without request method is actual", policy: "acme", req: Request{Method: "OPTIONS", Origin: "https://evil.example"}, want: refusedActual(ReasonOriginNotAllowed)},

	// Preflights.
	{name: "preflight allowed", policy: "acme", req: preflight("https://app.example.com", "PUT", "content-type,x-request-id"), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Allow-Methods", acmeMethods), h("Access-Control-Allow-Headers", "Content-Type, X-Request-Id, Authorization"),
		h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight without request headers", policy: "acme", req: preflight("https://a.example.com", "DELETE", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.example.com"), h("Access-Control-Allow-Methods", acmeMethods), h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight request headers with a little whitespace and empty elements", policy: "acme", req: preflight("https://a.example.com", "PATCH", " , authorization ,, \tcontent-type,x-request-id,"), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.example.com"), h("Access-Control-Allow-Methods", acmeMethods),
		h("Access-Control-Allow-Headers", "Content-Type, X-Request-Id, Authorization"), h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight only empty request header elements", policy: "acme", req: preflight("https://a.example.com", "PUT", " ,, "), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.example.com"), h("Access-Control-Allow-Methods", acmeMethods), h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight safelisted method not listed", policy: "nomethods", req: preflight("https://app.example.com", "POST", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"), varyPF,
	}}},
	{name: "preflight safelisted method with a listed policy", policy: "acme", req: preflight("https://public.example.org", "GET", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://public.example.org"), h("Access-Control-Allow-Methods", acmeMethods), h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight safelisted method is case-sensitive", policy: "nomethods", req: preflight("https://app.example.com", "get", ""), want: refusedPreflight(403, ReasonMethodNotAllowed, "get")},
	{name: "preflight method not allowed", policy: "acme", req: preflight("https://app.example.com", "PROPFIND", ""), want: refusedPreflight(403, ReasonMethodNotAllowed, "PROPFIND")},
	{name: "preflight method case-sensitive", policy: "acme", req: preflight("https://app.example.com", "patch", ""), want: refusedPreflight(403, ReasonMethodNotAllowed, "patch")},
	{name: "preflight normalized method from config", policy: "acme", req: preflight("https://app.example.com", "delete", ""), want: refusedPreflight(403, ReasonMethodNotAllowed, "delete")},
	{name: "preflight method malformed", policy: "acme", req: preflight("https://app.example.com", "PUT POST", ""), want: refusedPreflight(403, ReasonMethodMalformed, "PUT POST")},
	{name: "preflight method too long", policy: "acme", req: preflight("https://app.example.com", strings.Repeat("M", MaxNameLength+1), ""), want: refusedPreflight(403, ReasonMethodMalformed, strings.Repeat("M", MaxNameLength))},
	{name: "preflight header not allowed", policy: "acme", req: preflight("https://app.example.com", "PUT", "content-type,x-other"), want: refusedPreflight(403, ReasonHeaderNotAllowed, "x-other")},
	{name: "preflight header upper case is not as browsers send it", policy: "acme", req: preflight("https://app.example.com", "PUT", "Content-Type"), want: refusedPreflight(403, ReasonHeadersMalformed, "Content-Type")},
	{name: "preflight headers out of order", policy: "acme", req: preflight("https://app.example.com", "PUT", "x-request-id,content-type"), want: refusedPreflight(403, ReasonHeadersMalformed, "content-type")},
	{name: "preflight headers duplicated", policy: "acme", req: preflight("https://app.example.com", "PUT", "content-type,content-type"), want: refusedPreflight(403, ReasonHeadersMalformed, "content-type")},
	{name: "preflight headers with too much whitespace", policy: "acme", req: preflight("https://app.example.com", "PUT", "content-type,   x-request-id"), want: refusedPreflight(403, ReasonHeadersMalformed, "")},
	{name: "preflight headers with too many empty elements", policy: "acme", req: preflight("https://app.example.com", "PUT", strings.Repeat(",", maxACRHEmptyElements+1)+"content-type"), want: refusedPreflight(403, ReasonHeadersMalformed, "")},
	{name: "preflight header longer than any listed", policy: "acme", req: preflight("https://app.example.com", "PUT", "x-"+strings.Repeat("a", 200)), want: refusedPreflight(403, ReasonHeaderNotAllowed, "x-"+strings.Repeat("a", MaxNameLength-2))},
	{name: "preflight header malformed", policy: "acme", req: preflight("https://app.example.com", "PUT", "content-type, x(y)"), want: refusedPreflight(403, ReasonHeadersMalformed, "x(y)")},
	{name: "preflight header with inner space", policy: "acme", req: preflight("https://app.example.com", "PUT", "content type"), want: refusedPreflight(403, ReasonHeadersMalformed, "content type")},
	{name: "preflight headers too long", policy: "acme", req: preflight("https://app.example.com", "PUT", strings.Repeat("a", MaxRequestHeadersBytes+1)), want: refusedPreflight(403, ReasonHeadersMalformed, "")},
	{name: "preflight headers at the element limit", policy: "any", req: preflight("https://app.example.com", "PUT", sortedNames(MaxRequestHeaders)), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Allow-Methods", "*"), h("Access-Control-Allow-Headers", "*"), varyPF,
	}}},
	{name: "preflight headers past the element limit", policy: "any", req: preflight("https://app.example.com", "PUT", sortedNames(MaxRequestHeaders+1)), want: refusedPreflight(403, ReasonHeadersMalformed, "")},
	{name: "preflight private network not allowed", policy: "acme", req: Request{Method: "OPTIONS", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestPrivateNetwork: "true"}, want: refusedPreflight(403, ReasonPrivateNetworkNotAllowed, "")},
	{name: "preflight private network other value ignored", policy: "acme", req: Request{Method: "OPTIONS", Origin: "https://public.example.org", AccessControlRequestMethod: "PUT", AccessControlRequestPrivateNetwork: "false"}, want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://public.example.org"), h("Access-Control-Allow-Methods", acmeMethods), h("Access-Control-Max-Age", "600"), varyPF,
	}}},
	{name: "preflight origin not allowed", policy: "acme", req: preflight("https://evil.example", "PUT", ""), want: refusedPreflight(403, ReasonOriginNotAllowed, "")},
	{name: "preflight origin malformed", policy: "acme", req: preflight("https://app.example.com:443", "PUT", ""), want: refusedPreflight(403, ReasonOriginMalformed, "")},
	{name: "preflight null not listed", policy: "acme", req: preflight("null", "GET", ""), want: refusedPreflight(403, ReasonOriginNotAllowed, "")},

	// A policy that answers "*" to everyone.
	{name: "any actual", policy: "any", req: get("https://whatever.example"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "any no origin has no Vary", policy: "any", req: Request{Method: "GET"}, want: view{Kind: KindNotCORS, Reason: ReasonNoOrigin}},
	// A policy that answers "*" answers it whatever the Origin says.
	{name: "any covers null", policy: "any", req: get("null"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "any allows other schemes", policy: "any", req: get("chrome-extension://abcdef"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "any allows hosts longer than DNS names", policy: "any", req: get("https://" + strings.Repeat("a.", 200) + "example"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "any covers malformed origins", policy: "any", req: get("https://a.example/"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "any covers over-long origins", policy: "any", req: get("https://" + strings.Repeat("a", 2*MaxPatternLength)), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*"),
	}}},
	{name: "over-long origin is malformed", policy: "acme", req: get("https://app.example.com" + strings.Repeat("a", MaxPatternLength)), want: refusedActual(ReasonOriginMalformed)},
	{name: "any preflight", policy: "any", req: preflight("https://whatever.example", "PATCH", "x-bar, x-foo"), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Allow-Methods", "*"), h("Access-Control-Allow-Headers", "*"), varyPF,
	}}},
	{name: "any header star never covers authorization", policy: "any", req: preflight("https://whatever.example", "PATCH", "authorization,x-foo"), want: refusedPreflight(403, ReasonHeaderNotAllowed, "authorization")},
	{name: "any method star never covers forbidden methods", policy: "any", req: preflight("https://whatever.example", "CONNECT", ""), want: refusedPreflight(403, ReasonMethodNotAllowed, "CONNECT")},

	// "*" next to a credentialed rule.
	{name: "mixed credentialed actual drops star from expose", policy: "mixed", req: get("https://app.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Expose-Headers", "X-Request-Id"), varyO,
	}}},
	{name: "mixed other origin gets star and Vary", policy: "mixed", req: get("https://other.example"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Expose-Headers", "*, X-Request-Id"), varyO,
	}}},
	{name: "mixed no origin has Vary", policy: "mixed", req: Request{Method: "GET"}, want: view{Kind: KindNotCORS, Reason: ReasonNoOrigin, Headers: []Header{varyO}}},
	{name: "mixed credentialed preflight echoes", policy: "mixed", req: Request{Method: "OPTIONS", Origin: "https://app.example.com", AccessControlRequestMethod: "PATCH", AccessControlRequestHeaders: " x-bar,x-foo , ", AccessControlRequestPrivateNetwork: "true"}, want: view{Kind: KindPreflight, Allowed: true, Status: 200, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"),
		h("Access-Control-Allow-Methods", "PATCH"), h("Access-Control-Allow-Headers", "x-bar,x-foo"),
		h("Access-Control-Allow-Private-Network", "true"), varyPF,
	}}},
	{name: "mixed uncredentialed preflight", policy: "mixed", req: preflight("https://other.example", "PATCH", "x-foo"), want: view{Kind: KindPreflight, Allowed: true, Status: 200, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Allow-Methods", "*"), h("Access-Control-Allow-Headers", "*"), varyPF,
	}}},
	{name: "mixed listed authorization is echoed", policy: "mixed", req: preflight("https://other.example", "PATCH", "authorization,x-foo"), want: view{Kind: KindPreflight, Allowed: true, Status: 200, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Allow-Methods", "*"), h("Access-Control-Allow-Headers", "authorization,x-foo"), varyPF,
	}}},
	{name: "mixed preflight from null gets star", policy: "mixed", req: preflight("null", "PATCH", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 200, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), h("Access-Control-Allow-Methods", "*"), varyPF,
	}}},
	{name: "mixed refused preflight status", policy: "mixed", req: preflight("https://other.example", "CONNECT", ""), want: refusedPreflight(400, ReasonMethodNotAllowed, "CONNECT")},

	// "*" next to wildcards.
	{name: "wildany uncredentialed wildcard answers star", policy: "wildany", req: get("https://a.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), varyO,
	}}},
	{name: "wildany most specific wildcard grants credentials", policy: "wildany", req: get("https://a.secure.example.com"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.secure.example.com"), h("Access-Control-Allow-Credentials", "true"), varyO,
	}}},
	{name: "wildany wildcard with port", policy: "wildany", req: get("https://a.b.example.com:8443"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.b.example.com:8443"), h("Access-Control-Allow-Credentials", "true"), varyO,
	}}},
	{name: "wildany port wildcard then subdomain wildcard", policy: "wildany", req: get("http://localhost:3000"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), varyO,
	}}},
	{name: "wildany localhost subdomain", policy: "wildany", req: get("http://app.localhost"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "http://app.localhost"), h("Access-Control-Allow-Credentials", "true"), varyO,
	}}},
	{name: "wildany max age zero", policy: "wildany", req: preflight("https://a.secure.example.com", "GET", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://a.secure.example.com"), h("Access-Control-Allow-Credentials", "true"), h("Access-Control-Max-Age", "0"), varyPF,
	}}},

	// null.
	{name: "null listed", policy: "null", req: get("null"), want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "null"), varyO,
	}}},
	{name: "null listed preflight", policy: "null", req: preflight("null", "GET", ""), want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "null"), varyPF,
	}}},
	{name: "null upper case", policy: "null", req: get("NULL"), want: refusedActual(ReasonOriginMalformed)},
	{name: "no origins", policy: "empty", req: get("https://app.example.com"), want: refusedActual(ReasonOriginNotAllowed)},

	// Cross-origin protection.
	{name: "cop refuses cross-site POST", policy: "cop", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://evil.example", SecFetchSite: "cross-site"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop refuses same-site DELETE", policy: "cop", req: Request{Method: "DELETE", Host: "api.example.com", Origin: "https://www.example.com", SecFetchSite: "same-site"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "DELETE", Headers: []Header{ctText, varyO}}},
	{name: "cop refuses unknown Sec-Fetch-Site", policy: "cop", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://evil.example", SecFetchSite: "bogus"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop refuses lower-case get", policy: "cop", req: Request{Method: "get", Host: "api.example.com", Origin: "https://evil.example", SecFetchSite: "cross-site"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "get", Headers: []Header{ctText, varyO}}},
	{name: "cop refuses cross-site without Origin", policy: "cop", req: Request{Method: "POST", Host: "api.example.com", SecFetchSite: "cross-site"}, want: view{Kind: KindNotCORS, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop trusts a listed origin", policy: "cop", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://app.example.com", SecFetchSite: "cross-site"}, want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "https://app.example.com"), h("Access-Control-Allow-Credentials", "true"), varyO,
	}}},
	{name: "cop lets cross-site GET through", policy: "cop", req: Request{Method: "GET", Host: "api.example.com", Origin: "https://evil.example", SecFetchSite: "cross-site"}, want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), varyO,
	}}},
	{name: "cop lets preflights through", policy: "cop", req: Request{Method: "OPTIONS", Host: "api.example.com", Origin: "https://evil.example", AccessControlRequestMethod: "GET", SecFetchSite: "cross-site"}, want: view{Kind: KindPreflight, Allowed: true, Status: 204, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "*"), varyPF,
	}}},
	{name: "cop same-origin by Sec-Fetch-Site", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://api.example.com", SecFetchSite: "same-origin"}, want: refusedActual(ReasonOriginNotAllowed)},
	{name: "cop user-initiated", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com", SecFetchSite: "none"}, want: view{Kind: KindNotCORS, Reason: ReasonNoOrigin, Headers: []Header{varyO}}},
	{name: "cop same origin by Host with default port", policy: "copstrict", req: Request{Method: "POST", Host: "API.example.com:443", Origin: "https://api.example.com"}, want: refusedActual(ReasonOriginNotAllowed)},
	{name: "cop same origin by Host with port", policy: "copstrict", req: Request{Method: "PUT", Host: "api.example.com:8443", Origin: "https://api.example.com:8443"}, want: refusedActual(ReasonOriginNotAllowed)},
	{name: "cop same origin IPv6", policy: "copstrict", req: Request{Method: "PUT", Host: "[::1]:8080", Origin: "http://[::1]:8080"}, want: refusedActual(ReasonOriginNotAllowed)},
	{name: "cop other scheme default port differs", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com:443", Origin: "http://api.example.com"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop other host", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://evil.example"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop malformed origin", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://api.example.com/"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop no Host", policy: "copstrict", req: Request{Method: "POST", Origin: "https://api.example.com"}, want: view{Kind: KindActual, Status: 403, Reason: ReasonCrossOriginRefused, Detail: "POST", Headers: []Header{ctText, varyO}}},
	{name: "cop listed null is trusted", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com", Origin: "null", SecFetchSite: "cross-site"}, want: view{Kind: KindActual, Allowed: true, Reason: ReasonAllowed, Headers: []Header{
		h("Access-Control-Allow-Origin", "null"), varyO,
	}}},
	{name: "cop without browser headers", policy: "copstrict", req: Request{Method: "POST", Host: "api.example.com"}, want: view{Kind: KindNotCORS, Reason: ReasonNoOrigin, Headers: []Header{varyO}}},
	{name: "cop off lets cross-site POST through", policy: "acme", req: Request{Method: "POST", Host: "api.example.com", Origin: "https://evil.example", SecFetchSite: "cross-site"}, want: refusedActual(ReasonOriginNotAllowed)},

	// Disabled.
	{name: "disabled actual", policy: "disabled", req: get("https://app.example.com"), want: view{Kind: KindNotCORS, Reason: ReasonPolicyDisabled}},
	{name: "disabled preflight", policy: "disabled", req: preflight("https://app.example.com", "PUT", ""), want: view{Kind: KindNotCORS, Reason: ReasonPolicyDisabled}},
}

// compiled holds testConfigs compiled once.
var compiled = func() map[string]*Policy {
	m := make(map[string]*Policy, len(testConfigs))
	for name, c := range testConfigs {
		p, err := Compile(c)
		if err != nil {
			panic("policy test config " + name + ": " + err.Error())
		}
		m[name] = p
	}
	return m
}()

func TestCheck(t *testing.T) {
	for _, tt := range checkTests {
		t.Run(tt.name, func(t *testing.T) {
			p := compiled[tt.policy]
			d := p.Check(tt.req)
			if diff := cmp.Diff(tt.want, viewOf(d)); diff != "" {
				t.Errorf("Check(%+v) mismatch (-want +got):\n%s", tt.req, diff)
			}
			cfg := testConfigs[tt.policy]
			if d.Policy != cfg.Name || d.Revision != cfg.Revision || d.Mode != cfg.Mode || d.Origin != tt.req.Origin {
				t.Errorf("Check(%+v) = Policy %q, Revision %d, Mode %v, Origin %q; want %q, %d, %v, %q",
					tt.req, d.Policy, d.Revision, d.Mode, d.Origin, cfg.Name, cfg.Revision, cfg.Mode, tt.req.Origin)
			}
			checkInvariants(t, tt.req, d)
		})
	}
}

// checkInvariants checks what must hold of every decision.
func checkInvariants(t *testing.T, r Request, d Decision) {
	t.Helper()
	acao, acac := "", false
	for _, hd := range d.Headers() {
		if hd.Value == "" {
			t.Errorf("Check(%+v): empty value for %s", r, hd.Name)
		}
		if strings.ContainsAny(hd.Value, "\r\n\x00") {
			t.Errorf("Check(%+v): %s value %q has a control character", r, hd.Name, hd.Value)
		}
		if hd.Append != (hd.Name == "Vary") {
			t.Errorf("Check(%+v): %s has Append = %v", r, hd.Name, hd.Append)
		}
		switch hd.Name {
		case "Access-Control-Allow-Origin":
			acao = hd.Value
		case "Access-Control-Allow-Credentials":
			acac = true
		}
	}
	if acao == "*" && acac {
		t.Errorf("Check(%+v): Access-Control-Allow-Origin: * with credentials", r)
	}
	if acao != "" && acao != "*" && acao != r.Origin {
		t.Errorf("Check(%+v): Access-Control-Allow-Origin %q is neither * nor the request's origin", r, acao)
	}
	if (acao != "") != (d.Allowed && d.Reason == ReasonAllowed) {
		t.Errorf("Check(%+v): Allowed = %v with Access-Control-Allow-Origin %q", r, d.Allowed, acao)
	}
}

func TestCheckReportOnlyDecidesTheSame(t *testing.T) {
	for _, tt := range checkTests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfigs[tt.policy]
			if cfg.Mode == ModeDisabled {
				t.Skip("disabled policies decide nothing")
			}
			cfg.Mode = ModeReportOnly
			d := mustCompile(t, cfg).Check(tt.req)
			if diff := cmp.Diff(tt.want, viewOf(d)); diff != "" {
				t.Errorf("Check(%+v) mismatch (-want +got):\n%s", tt.req, diff)
			}
			if d.Mode != ModeReportOnly {
				t.Errorf("Check(%+v).Mode = %v, want REPORT_ONLY", tt.req, d.Mode)
			}
		})
	}
}

func TestCheckNilPolicy(t *testing.T) {
	var p *Policy
	tests := []struct {
		name string
		req  Request
		want view
	}{
		{name: "preflight", req: preflight("https://app.example.com", "PUT", ""), want: view{Kind: KindPreflight, Reason: ReasonNoPolicy}},
		{name: "actual", req: get("https://app.example.com"), want: view{Kind: KindActual, Reason: ReasonNoPolicy}},
		{name: "no origin", req: Request{Method: "POST"}, want: view{Kind: KindNotCORS, Reason: ReasonNoPolicy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(tt.req)
			if diff := cmp.Diff(tt.want, viewOf(d)); diff != "" {
				t.Errorf("Check(%+v) mismatch (-want +got):\n%s", tt.req, diff)
			}
			if d.Policy != "" || d.Origin != tt.req.Origin {
				t.Errorf("Check(%+v) = Policy %q, Origin %q", tt.req, d.Policy, d.Origin)
			}
		})
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, tt := range checkTests {
		p := compiled[tt.policy]
		if n := testing.AllocsPerRun(20, func() { _ = p.Check(tt.req) }); n != 0 {
			t.Errorf("%s: Check allocates %v times per run, want 0", tt.name, n)
		}
	}
}

func TestWildcardLookupIsBounded(t *testing.T) {
	// A long origin with many labels costs one lookup per label count that
	// some rule uses, not one per label.
	p := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://*.example.com"}}})
	host := strings.Repeat("a.", 5000) + "example.com"
	d := p.Check(get("https://" + host))
	if d.Reason != ReasonOriginMalformed {
		t.Errorf("Check(long host).Reason = %v, want ORIGIN_MALFORMED (longer than a DNS name)", d.Reason)
	}
	host = strings.Repeat("a.", 100) + "example.com"
	if d := p.Check(get("https://" + host)); d.Reason != ReasonAllowed {
		t.Errorf("Check(deep host).Reason = %v, want ALLOWED", d.Reason)
	}
}

func TestWildcardDeepSuffix(t *testing.T) {
	// Suffixes with more labels than parseRequestOrigin remembers dots.
	p := mustCompile(t, Config{Origins: []Origin{
		{Pattern: "https://*.a.b.c.d.e.f.g.h.i.example.com", AllowCredentials: true},
		{Pattern: "https://*.example.com"},
	}})
	tests := []struct {
		name      string
		origin    string
		want      Reason
		wantCreds bool
	}{
		{name: "one label below the deep suffix", origin: "https://x.a.b.c.d.e.f.g.h.i.example.com", want: ReasonAllowed, wantCreds: true},
		{name: "several labels below the deep suffix", origin: "https://z.y.x.a.b.c.d.e.f.g.h.i.example.com", want: ReasonAllowed, wantCreds: true},
		{name: "deep suffix apex falls back to the short suffix", origin: "https://a.b.c.d.e.f.g.h.i.example.com", want: ReasonAllowed},
		{name: "other deep host", origin: "https://x.a.b.c.d.e.f.g.h.j.example.com", want: ReasonAllowed},
		{name: "apex", origin: "https://example.com", want: ReasonOriginNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(get(tt.origin))
			creds := false
			for _, hd := range d.Headers() {
				creds = creds || hd.Name == "Access-Control-Allow-Credentials"
			}
			if d.Reason != tt.want || creds != tt.wantCreds {
				t.Errorf("Check(%q) = %v, credentials %v; want %v, %v", tt.origin, d.Reason, creds, tt.want, tt.wantCreds)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		req    Request
		want   string
	}{
		{name: "not allowed", policy: "acme", req: get("https://evil.example"), want: "origin https://evil.example is not in policies/acme"},
		{name: "allowed", policy: "acme", req: get("https://app.example.com"), want: "origin https://app.example.com is allowed by policies/acme"},
		{name: "preflight allowed", policy: "acme", req: preflight("https://app.example.com", "PUT", ""), want: "preflight from origin https://app.example.com is allowed by policies/acme"},
		{name: "malformed is quoted", policy: "acme", req: get("https://app.example.com\nforged"), want: `origin "https://app.example.com\nforged" is not a canonical origin (lower-case scheme://host[:port], no path, no default port, one origin)`},
		{name: "no origin", policy: "acme", req: Request{Method: "GET"}, want: "request has no Origin header; it is not a CORS request"},
		{name: "method", policy: "acme", req: preflight("https://app.example.com", "PROPFIND", ""), want: "method PROPFIND is not allowed by policies/acme (preflight from origin https://app.example.com)"},
		{name: "method malformed", policy: "acme", req: preflight("https://app.example.com", "A B", ""), want: `Access-Control-Request-Method "A B" is not a valid method`},
		{name: "header", policy: "acme", req: preflight("https://app.example.com", "PUT", "x-other"), want: "request header x-other is not allowed by policies/acme (preflight from origin https://app.example.com)"},
		{name: "header malformed", policy: "acme", req: preflight("https://app.example.com", "PUT", "a:b"), want: `Access-Control-Request-Headers lists "a:b", which is not a valid header name`},
		{name: "headers too large", policy: "acme", req: preflight("https://app.example.com", "PUT", strings.Repeat("a,", 3000)), want: "Access-Control-Request-Headers is longer than 4096 bytes or lists more than 64 names"},
		{name: "private network", policy: "acme", req: Request{Method: "OPTIONS", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestPrivateNetwork: "true"}, want: "private network access is not allowed by policies/acme (preflight from origin https://app.example.com)"},
		{name: "cross origin", policy: "copstrict", req: Request{Method: "POST", Origin: "https://evil.example", SecFetchSite: "cross-site"}, want: "cross-origin POST request from origin https://evil.example refused by policies/copstrict: the origin is not trusted"},
		{name: "cross origin without origin", policy: "copstrict", req: Request{Method: "POST", SecFetchSite: "cross-site"}, want: "cross-origin POST request from an unknown origin refused by policies/copstrict: the origin is not trusted"},
		{name: "disabled", policy: "disabled", req: get("https://app.example.com"), want: "policies/disabled is disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := compiled[tt.policy].Check(tt.req)
			if got := d.Message(); got != tt.want {
				t.Errorf("Message() = %q, want %q", got, tt.want)
			}
		})
	}
	var nilPolicy *Policy
	d := nilPolicy.Check(get("https://a.example"))
	if got, want := d.Message(), "no policy governs this request"; got != want {
		t.Errorf("nil policy Message() = %q, want %q", got, want)
	}
	p := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://a.example"}}, Mode: ModeReportOnly})
	d = p.Check(get("https://b.example"))
	if got, want := d.Message(), "report only: origin https://b.example is not in the policy"; got != want {
		t.Errorf("report-only unnamed Message() = %q, want %q", got, want)
	}
}

func TestCheckRequestHeaders(t *testing.T) {
	p := compiled["acme"]
	tests := []struct {
		name   string
		in     string
		reason Reason
		detail string
		echo   string // the requested names as echoed
	}{
		{name: "empty", in: "", reason: ReasonAllowed},
		{name: "one", in: "content-type", reason: ReasonAllowed, echo: "content-type"},
		{name: "trimmed span", in: " content-type , x-request-id\t", reason: ReasonAllowed, echo: "content-type , x-request-id"},
		{name: "leading empty elements", in: ",,,content-type", reason: ReasonAllowed, echo: "content-type"},
		{name: "not allowed", in: "content-type,x-evil", reason: ReasonHeaderNotAllowed, detail: "x-evil"},
		{name: "malformed", in: "content-type,\"x\"", reason: ReasonHeadersMalformed, detail: "\"x\""},
		{name: "non-ASCII", in: "x-é", reason: ReasonHeadersMalformed, detail: "x-é"},
		{name: "too long", in: strings.Repeat(" ", MaxRequestHeadersBytes+1), reason: ReasonHeadersMalformed},
		{name: "exactly the byte limit", in: strings.Repeat(",", maxACRHEmptyElements) + strings.Repeat(" ", MaxRequestHeadersBytes-len("authorization")-maxACRHEmptyElements), reason: ReasonHeadersMalformed},
		{name: "too much whitespace", in: "   authorization", reason: ReasonHeadersMalformed},
		{name: "whole list as browsers send it", in: "authorization,content-type,x-request-id", reason: ReasonAllowed, echo: "authorization,content-type,x-request-id"},
		{name: "whole list in another order", in: "x-request-id,authorization,content-type", reason: ReasonHeadersMalformed, detail: "authorization"},
		{name: "upper case", in: "Content-Type,X-Request-Id", reason: ReasonHeadersMalformed, detail: "Content-Type"},
		{name: "trailing whitespace before comma", in: "content-type \t,x-request-id", reason: ReasonAllowed, echo: "content-type \t,x-request-id"},
		{name: "joined by a proxy", in: "authorization, content-type,x-request-id", reason: ReasonAllowed, echo: "authorization, content-type,x-request-id"},
		{name: "inner whitespace", in: "content type", reason: ReasonHeadersMalformed, detail: "content type"},
		{name: "prefix of a listed name", in: "content-typ", reason: ReasonHeaderNotAllowed, detail: "content-typ"},
		{name: "same length and first byte as a listed name", in: "x-request-ix", reason: ReasonHeaderNotAllowed, detail: "x-request-ix"},
		{name: "duplicates", in: strings.Repeat("content-type,", MaxRequestHeaders+1), reason: ReasonHeadersMalformed, detail: "content-type"},
	}
	// More names than smallHeaderList: looked up in the map.
	var many []string
	for i := range smallHeaderList + 4 {
		many = append(many, fmt.Sprintf("X-H%d", i))
	}
	big := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://a.example"}}, AllowedRequestHeaders: many})
	bigTests := []struct {
		name   string
		in     string
		reason Reason
		detail string
	}{
		{name: "large list upper case", in: "X-H0,X-H19", reason: ReasonHeadersMalformed, detail: "X-H0"},
		{name: "large list lower case", in: "x-h17,x-h3", reason: ReasonAllowed},
		{name: "large list unknown", in: "x-h20,x-h3", reason: ReasonHeaderNotAllowed, detail: "x-h20"},
		{name: "large list whole", in: big.requestHeadersCanon, reason: ReasonAllowed},
	}
	for _, tt := range bigTests {
		t.Run(tt.name, func(t *testing.T) {
			if res := big.checkRequestHeaders(tt.in); res.reason != tt.reason || res.detail != tt.detail {
				t.Errorf("checkRequestHeaders(%q) = %+v; want reason %v, detail %q", tt.in, res, tt.reason, tt.detail)
			}
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := p.checkRequestHeaders(tt.in)
			if res.reason != tt.reason || res.detail != tt.detail || res.reason == ReasonAllowed && tt.in[res.first:res.last] != tt.echo {
				t.Errorf("checkRequestHeaders(%q) = %+v; want reason %v, detail %q, echo %q", tt.in, res, tt.reason, tt.detail, tt.echo)
			}
		})
	}
}

// sortedNames returns n distinct header names, sorted and joined as
// browsers send them.
func sortedNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("x-h%03d", i)
	}
	return strings.Join(names, ",")
}

// TestOtherSchemeOrigins: origins that extensions and app shells send are
// exact patterns; an extension's may carry credentials, a shared app
// shell's only with the dangerous flag.
func TestOtherSchemeOrigins(t *testing.T) {
	const ext, shell = "chrome-extension://abcdefghijklmnopabcdefghijklmnop", "capacitor://localhost"
	p := mustCompile(t, Config{Origins: []Origin{{Pattern: ext, AllowCredentials: true}, {Pattern: shell}, {Pattern: "https://*.example.com"}}})
	tests := []struct {
		origin string
		want   Reason
		creds  bool
	}{
		{origin: ext, want: ReasonAllowed, creds: true},
		{origin: shell, want: ReasonAllowed},
		{origin: "ionic://localhost", want: ReasonOriginNotAllowed},
		{origin: "chrome-extension://other", want: ReasonOriginNotAllowed},
		{origin: "CAPACITOR://localhost", want: ReasonOriginMalformed},
	}
	for _, tt := range tests {
		d := p.Check(get(tt.origin))
		hasCreds := false
		for _, h := range d.Headers() {
			hasCreds = hasCreds || h.Name == "Access-Control-Allow-Credentials"
		}
		if d.Reason != tt.want || hasCreds != tt.creds {
			t.Errorf("Check(%s) = %v, credentials %v; want %v, %v", tt.origin, d.Reason, hasCreds, tt.want, tt.creds)
		}
	}
	if _, err := Compile(Config{Origins: []Origin{{Pattern: shell, AllowCredentials: true}}}); err == nil {
		t.Errorf("Compile accepted credentials for %s, which every app built on the shell sends", shell)
	}
	if _, err := Compile(Config{Origins: []Origin{{Pattern: shell, AllowCredentials: true, DangerouslyAllowInsecureCredentials: true}}}); err != nil {
		t.Errorf("Compile refused credentials for %s with the dangerous flag: %v", shell, err)
	}
}

// TestTrailingDotAndUnderscoreOrigins: a trailing dot names a distinct
// origin, never silently equal to the dotless one; underscores in labels
// match as browsers send them.
func TestTrailingDotAndUnderscoreOrigins(t *testing.T) {
	dotless := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://app.example.com"}, {Pattern: "https://*.example.org"}}})
	dotted := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://app.example.com."}, {Pattern: "https://my_app.example.net"}}})
	tests := []struct {
		p      *Policy
		origin string
		want   Reason
	}{
		{p: dotless, origin: "https://app.example.com", want: ReasonAllowed},
		{p: dotless, origin: "https://app.example.com.", want: ReasonOriginNotAllowed},
		{p: dotless, origin: "https://a.example.org.", want: ReasonOriginNotAllowed},
		{p: dotted, origin: "https://app.example.com.", want: ReasonAllowed},
		{p: dotted, origin: "https://app.example.com", want: ReasonOriginNotAllowed},
		{p: dotted, origin: "https://my_app.example.net", want: ReasonAllowed},
		{p: dotted, origin: "https://myapp.example.net", want: ReasonOriginNotAllowed},
	}
	for _, tt := range tests {
		if got := tt.p.Check(get(tt.origin)).Reason; got != tt.want {
			t.Errorf("Check(%s).Reason = %v, want %v", tt.origin, got, tt.want)
		}
	}
}

// TestSubdomainAndPortWildcard: "https://*.example.com:*" matches every
// subdomain on every port, never the apex, never another scheme.
func TestSubdomainAndPortWildcard(t *testing.T) {
	p := mustCompile(t, Config{Origins: []Origin{{Pattern: "https://*.example.com:*", AllowCredentials: true}, {Pattern: "https://a.example.com:8443"}}})
	tests := []struct {
		origin string
		want   Reason
		creds  bool
	}{
		{origin: "https://a.example.com", want: ReasonAllowed, creds: true},
		{origin: "https://a.b.example.com:8443", want: ReasonAllowed, creds: true},
		{origin: "https://a.example.com:8443", want: ReasonAllowed, creds: true}, // folded into the exact rule
		{origin: "https://example.com:8443", want: ReasonOriginNotAllowed},
		{origin: "http://a.example.com:8443", want: ReasonOriginNotAllowed},
		{origin: "https://a.example.com.evil:8443", want: ReasonOriginNotAllowed},
	}
	for _, tt := range tests {
		d := p.Check(get(tt.origin))
		creds := false
		for _, h := range d.Headers() {
			creds = creds || h.Name == "Access-Control-Allow-Credentials"
		}
		if d.Reason != tt.want || creds != tt.creds {
			t.Errorf("Check(%s) = %v credentials %v, want %v %v", tt.origin, d.Reason, creds, tt.want, tt.creds)
		}
	}
}
