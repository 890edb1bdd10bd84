package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzNormalizeOrigin(f *testing.F) {
	for _, tt := range normalizeOriginTests {
		f.Add(tt.in)
	}
	for _, tt := range requestOriginTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeOrigin(s)
		if err != nil {
			if fes := FieldErrors(err); len(fes) != 1 || fes[0].Reason == "" || fes[0].Fix == "" {
				t.Fatalf("NormalizeOrigin(%q) error %v is not one *FieldError with a Reason and a Fix", s, err)
			}
			return
		}
		again, err := NormalizeOrigin(out)
		if err != nil || again != out {
			t.Fatalf("NormalizeOrigin(%q) = %q, but NormalizeOrigin(%q) = %q, %v", s, out, out, again, err)
		}
		pt, prob := parsePattern(out)
		if prob != nil {
			t.Fatalf("parsePattern(%q): %v", out, prob.reason)
		}
		// Hosts of other schemes are opaque and keep their case.
		if strings.ToLower(out) != out && pt.scheme != schemeOther {
			t.Fatalf("NormalizeOrigin(%q) = %q has upper case", s, out)
		}
		if pt.kind == patternExact {
			// A stored exact pattern is exactly what a browser sends.
			if _, ok := parseRequestOrigin(out); !ok {
				t.Fatalf("NormalizeOrigin(%q) = %q, which parseRequestOrigin refuses", s, out)
			}
			p, err := Compile(Config{Origins: []Origin{{Pattern: s}}})
			if err != nil {
				t.Fatalf("Compile(%q): %v", s, err)
			}
			if d := p.Check(Request{Method: "GET", Origin: out}); d.Reason != ReasonAllowed {
				t.Fatalf("policy with %q refuses origin %q: %v", s, out, d.Reason)
			}
		}
		// A canonical request origin that is a valid pattern is its own
		// normal form.
		if _, ok := parseRequestOrigin(s); ok && pt.kind == patternExact && out != s {
			t.Fatalf("canonical origin %q normalizes to %q", s, out)
		}
	})
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.api.example.com", "bücher.example:8443", "[::1]:80", "127.0.0.1", "API.example.com", "a_b", "*", "*.1.2.3.4", "x:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeHost(s)
		if err != nil {
			return
		}
		if again, err := NormalizeHost(out); err != nil || again != out {
			t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q, %v", s, out, out, again, err)
		}
	})
}

// referenceRequestHeaders is a plain reimplementation of checkRequestHeaders
// for differential fuzzing.
func referenceRequestHeaders(p *Policy, s string) (Reason, string) {
	if len(s) > MaxRequestHeadersBytes {
		return ReasonHeadersMalformed, ""
	}
	maxLen := p.maxHeaderLen
	if p.requestHeadersAny {
		maxLen = MaxNameLength
	}
	count, empty, prev, off := 0, 0, "", 0
	for e := range strings.SplitSeq(s, ",") {
		at := off // where e starts in s
		off += len(e) + 1
		lead := len(e) - len(strings.TrimLeft(e, " \t"))
		run := e[lead:]
		if i := strings.IndexAny(run, " \t"); i >= 0 {
			run = run[:i]
		}
		if lead > maxACRHOWS {
			return ReasonHeadersMalformed, ""
		}
		if len(run) > maxLen {
			return ReasonHeaderNotAllowed, clipElement(s[at+lead:])
		}
		trail := len(e) - lead - len(run) - len(strings.TrimLeft(e[lead+len(run):], " \t"))
		if lead+trail > maxACRHOWS {
			return ReasonHeadersMalformed, run
		}
		if lead+len(run)+trail != len(e) {
			return ReasonHeadersMalformed, clipElement(s[at+lead:])
		}
		if run == "" {
			if empty++; empty > maxACRHEmptyElements {
				return ReasonHeadersMalformed, ""
			}
			continue
		}
		if count++; count > MaxRequestHeaders {
			return ReasonHeadersMalformed, ""
		}
		if !isToken(run) || strings.ToLower(run) != run || prev != "" && run <= prev {
			return ReasonHeadersMalformed, run
		}
		prev = run
		_, listed := p.requestHeaders[run]
		if !listed && (!p.requestHeadersAny || run == "authorization") {
			return ReasonHeaderNotAllowed, run
		}
	}
	return ReasonAllowed, ""
}

func FuzzParseRequestHeaders(f *testing.F) {
	for _, tt := range checkTests {
		if tt.req.AccessControlRequestHeaders != "" {
			f.Add(tt.req.AccessControlRequestHeaders)
		}
	}
	for _, s := range []string{"", ",", " , ,", "a,b", "Content-Type, X-Request-Id", "x-é", "a\tb", strings.Repeat("a,", 70), "AUTHORIZATION"} {
		f.Add(s)
	}
	policies := []*Policy{compiled["acme"], compiled["any"], compiled["mixed"], compiled["nomethods"]}
	f.Fuzz(func(t *testing.T, s string) {
		// The iterator yields exactly the non-empty trimmed elements.
		var got []string
		for i := 0; ; {
			start, end, next, ok := nextListElement(s, i)
			if !ok {
				break
			}
			if next <= i || start < i || end > len(s) || start >= end {
				t.Fatalf("nextListElement(%q, %d) = %d, %d, %d: not progressing or out of bounds", s, i, start, end, next)
			}
			got = append(got, s[start:end])
			i = next
		}
		var want []string
		for e := range strings.SplitSeq(s, ",") {
			if e = strings.Trim(e, " \t"); e != "" {
				want = append(want, e)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("elements of %q = %q, want %q", s, got, want)
		}
		for _, p := range policies {
			res := p.checkRequestHeaders(s)
			reason, detail := referenceRequestHeaders(p, s)
			// The detail of a malformed list is informational: where the
			// scan gave up. The one of a refused name must be that name.
			if res.reason != reason || reason != ReasonHeadersMalformed && res.detail != detail {
				t.Fatalf("checkRequestHeaders(%q) = %v %q, reference %v %q", s, res.reason, res.detail, reason, detail)
			}
			if res.reason == ReasonAllowed && res.last > res.first {
				echo := s[res.first:res.last]
				if echo != strings.Trim(echo, " \t,") || strings.ContainsAny(echo, "\r\n\x00") {
					t.Fatalf("checkRequestHeaders(%q) echoes %q", s, echo)
				}
			}
		}
	})
}

func FuzzParseIPv6(f *testing.F) {
	for _, s := range []string{"::", "::1", "1::", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1::2::3", ":", "12345::", "fe80::1%eth0", "ABCD:EF01::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseIPv6(s)
		ref, err := netip.ParseAddr(s)
		refOK := err == nil && ref.Is6() && ref.Zone() == "" && !strings.Contains(s, ".")
		if ok != refOK {
			t.Fatalf("parseIPv6(%q) ok = %v, netip says %v (%v)", s, ok, refOK, err)
		}
		if ok && a != ref.As16() {
			t.Fatalf("parseIPv6(%q) = %x, netip %x", s, a, ref.As16())
		}
	})
}

// fuzzPolicies are the policies FuzzCheck picks from.
var fuzzPolicies = func() []string {
	names := make([]string, 0, len(testConfigs))
	for name := range testConfigs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}()

func FuzzCheck(f *testing.F) {
	for _, tt := range checkTests {
		r := tt.req
		f.Add(uint8(slices.Index(fuzzPolicies, tt.policy)), r.Method, r.Host, r.Origin,
			r.AccessControlRequestMethod, r.AccessControlRequestHeaders, r.AccessControlRequestPrivateNetwork, r.SecFetchSite)
	}
	f.Fuzz(func(t *testing.T, which uint8, method, host, origin, acrm, acrh, acrpn, sfs string) {
		name := fuzzPolicies[int(which)%len(fuzzPolicies)]
		p := compiled[name]
		r := Request{Method: method, Host: host, Origin: origin, AccessControlRequestMethod: acrm,
			AccessControlRequestHeaders: acrh, AccessControlRequestPrivateNetwork: acrpn, SecFetchSite: sfs}
		d1 := p.Check(r)
		d2 := p.Check(r)
		if diff := cmp.Diff(viewOf(d1), viewOf(d2)); diff != "" || d1.Message() != d2.Message() {
			t.Fatalf("Check(%+v) is not deterministic (-first +second):\n%s", r, diff)
		}
		checkInvariants(t, r, d1)
		if d1.Policy != p.Name() || d1.Origin != origin {
			t.Fatalf("Check(%+v) = Policy %q, Origin %q", r, d1.Policy, d1.Origin)
		}
		switch {
		case d1.Reason == ReasonPolicyDisabled:
			if len(d1.Headers()) != 0 {
				t.Fatalf("disabled decision has headers")
			}
		case !d1.Allowed:
			// Refusals carry no CORS header: Vary, and the Content-Type
			// of a body when they have one.
			for _, h := range d1.Headers() {
				if h.Name != "Vary" && (h.Name != "Content-Type" || d1.Body == "") {
					t.Fatalf("Check(%+v) refused with headers %+v", r, d1.Headers())
				}
			}
		}
		if d1.Kind == KindPreflight && d1.Reason != ReasonCrossOriginRefused && d1.Status == 0 {
			t.Fatalf("Check(%+v): preflight without a status", r)
		}
		_ = d1.Message()
	})
}
