package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Response header names and precomputed values.
const (
	headerAllowOrigin         = "Access-Control-Allow-Origin"
	headerAllowCredentials    = "Access-Control-Allow-Credentials"
	headerAllowMethods        = "Access-Control-Allow-Methods"
	headerAllowHeaders        = "Access-Control-Allow-Headers"
	headerMaxAge              = "Access-Control-Max-Age"
	headerAllowPrivateNetwork = "Access-Control-Allow-Private-Network"
	headerExposeHeaders       = "Access-Control-Expose-Headers"
	headerVary                = "Vary"
	headerContentType         = "Content-Type"

	contentTypeText = "text/plain; charset=utf-8"

	varyOrigin    = "Origin"
	varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network"

	// statusCrossOriginRefused answers requests refused by cross-origin
	// protection.
	statusCrossOriginRefused = 403
	// statusUnavailable answers preflights that arrive before any policy.
	statusUnavailable = 503
)

// originMatch is the outcome of matching a request Origin.
type originMatch struct {
	reason  Reason // ReasonAllowed, ReasonOriginNotAllowed or ReasonOriginMalformed
	acao    string // Access-Control-Allow-Origin value when allowed
	creds   bool
	trusted bool // matched a rule other than "*" (for cross-origin protection)
}

// malformedOrigin is the match of an Origin that is not an origin: a
// policy that answers "*" answers it too, since its answer does not depend
// on the Origin; no other rule can match it.
func (p *Policy) malformedOrigin() originMatch {
	if p.any {
		return originMatch{reason: ReasonAllowed, acao: "*"}
	}
	return originMatch{reason: ReasonOriginMalformed}
}

// wildcardMatch is the outcome of matching the wildcard rules.
type wildcardMatch struct{ found, creds bool }

// matchOrigin matches a request's Origin that no exact rule matches (Check
// tries them first): it must be in canonical form before the wildcard rules
// are tried, walking the labels of its host.
func (p *Policy) matchOrigin(origin string) originMatch {
	if origin == "null" {
		switch {
		case p.null:
			return originMatch{reason: ReasonAllowed, acao: "null", trusted: true}
		case p.any:
			// "*" answers without looking at the origin: so does null.
			return originMatch{reason: ReasonAllowed, acao: "*"}
		}
		return originMatch{reason: ReasonOriginNotAllowed}
	}
	var o reqOrigin
	if !o.parse(origin) {
		return p.malformedOrigin()
	}
	var m wildcardMatch
	// Call matchWildcards only when some rule could match: most refused
	// origins have fewer labels than every subdomain rule's suffix.
	if o.scheme >= 0 && (p.anyPort[o.scheme] != nil || o.ndots >= p.minSuffixLabels[o.scheme]) {
		m = p.matchWildcards(&o)
	}
	switch {
	case m.found:
		acao := origin
		if !m.creds && p.any {
			acao = "*"
		}
		return originMatch{reason: ReasonAllowed, acao: acao, creds: m.creds, trusted: true}
	case p.any:
		return originMatch{reason: ReasonAllowed, acao: "*"}
	}
	return originMatch{reason: ReasonOriginNotAllowed}
}

// matchWildcards matches an http(s) origin against the port and subdomain
// wildcard rules; credentials are granted when any matching rule grants
// them. The cost is bounded by the label counts the rules use, not by the
// number of rules or the length of the origin.
func (p *Policy) matchWildcards(o *reqOrigin) wildcardMatch {
	var m wildcardMatch
	if len(o.host) > 253 {
		return m // not a DNS name: no rule names it
	}
	if ap := p.anyPort[o.scheme]; ap != nil {
		if creds, ok := ap[o.host]; ok {
			m.found, m.creds = true, creds
			if creds {
				return m
			}
		}
	}
	sd, sa := p.subdomains[o.scheme], p.subdomainsAnyPort[o.scheme]
	if sd == nil && sa == nil || o.ip || strings.HasSuffix(o.host, ".") {
		return m
	}
	// The suffix with k labels starts after the k-th dot from the right.
	// Its dot is never at position 0 (hosts have no empty label), so the
	// apex itself is never a candidate.
	mask := p.suffixLabels[o.scheme]
	maxLabels := min(o.ndots, p.maxSuffixLabels[o.scheme])
	for k := 1; k <= maxLabels; k++ {
		if mask[uint(k)/64]&(1<<(uint(k)%64)) == 0 {
			continue
		}
		var dot int
		if k <= len(o.dots) {
			dot = int(o.dots[uint(o.ndots-k)%uint(len(o.dots))])
		} else {
			dot = nthDotFromRight(o.host, k)
		}
		// o.hostport[dot+1:] is the suffix followed by the origin's port;
		// o.host[dot+1:] the suffix alone, for rules of any port.
		if creds, ok := sd[o.hostport[dot+1:]]; ok {
			m.found = true
			if creds {
				m.creds = true
				return m
			}
		}
		if creds, ok := sa[o.host[dot+1:]]; ok {
			m.found = true
			if creds {
				m.creds = true
				return m
			}
		}
	}
	return m
}

// nthDotFromRight returns the position of the k-th dot of host counted
// from the right; host has at least k dots.
func nthDotFromRight(host string, k int) int {
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == '.' {
			if k--; k == 0 {
				return i
			}
		}
	}
	return -1
}

// CheckUnavailable decides a request that arrives before any policy is
// known (an SDK's first snapshot is still on its way): a preflight is
// answered 503 Service Unavailable, since it cannot be answered yet, and
// every other request goes on with `Vary: Origin`, since once policies
// arrive its response depends on the Origin. Reason is ReasonNoPolicy.
func CheckUnavailable(r Request) (d Decision) {
	d.Kind, d.Origin, d.Reason = kindOf(&r), r.Origin, ReasonNoPolicy
	if d.Kind == KindPreflight {
		d.Status = statusUnavailable
	}
	d.add(headerVary, varyOrigin, true)
	return d
}

// CheckUnknownPolicy decides a request for which an explicit policy name
// was given that no policy has (a route's corsd_policy naming a deleted or
// misspelled policy). It is never a quiet "no policy": a preflight is
// refused (403, the default refusal status), other requests go on without
// CORS headers. Reason is ReasonNoPolicy and Detail the name, clipped.
func CheckUnknownPolicy(name string, r Request) (d Decision) {
	d.Kind, d.Origin, d.Reason, d.Detail = kindOf(&r), r.Origin, ReasonNoPolicy, clip(name)
	if d.Kind == KindPreflight {
		d.Status = 403
		d.add(headerVary, varyPreflight, true)
	}
	return d
}

// kindOf classifies a request.
func kindOf(r *Request) Kind {
	switch {
	case r.Origin == "":
		return KindNotCORS
	case r.Method == "OPTIONS" && r.AccessControlRequestMethod != "":
		return KindPreflight
	}
	return KindActual
}

// Check decides one request. It allocates nothing: header values are
// strings the Policy precomputed or substrings of r. Preflights are OPTIONS
// requests with an Origin and an Access-Control-Request-Method; other
// requests with an Origin are actual CORS requests; the rest are not CORS
// requests, though cross-origin protection still applies to them.
//
// With ModeReportOnly the decision is computed exactly as with
// ModeEnforce; its Mode tells enforcement points to apply nothing. With
// ModeDisabled every request is KindNotCORS, ReasonPolicyDisabled, with no
// headers. A nil Policy decides ReasonNoPolicy with no headers.
func (p *Policy) Check(r Request) (d Decision) {
	// Check is small enough to be inlined, so that the 416-byte Decision is
	// built in the caller's frame through a pointer rather than zeroed and
	// copied through a call's result slot.
	p.check(&r, &d)
	return d
}

// check is Check writing into d, which must be zero.
func (p *Policy) check(r *Request, d *Decision) {
	d.Kind = kindOf(r)
	d.Origin = r.Origin
	if p == nil {
		d.Reason = ReasonNoPolicy
		return
	}
	d.Policy, d.Revision, d.Mode = p.name, p.revision, p.mode
	if p.mode == ModeDisabled {
		d.Kind, d.Reason = KindNotCORS, ReasonPolicyDisabled
		return
	}
	var m originMatch
	switch {
	case r.Origin == "":
	case len(r.Origin) > MaxPatternLength:
		// Longer than any rule: decided without reading it, so that the
		// cost does not grow with the input.
		m = p.malformedOrigin()
	default:
		// Fast path: an exact rule matches the raw Origin, which is then
		// canonical since rules are.
		creds, ok := false, false
		if len(p.exact) != 0 {
			creds, ok = p.exact[r.Origin]
		}
		if ok {
			m = originMatch{reason: ReasonAllowed, acao: r.Origin, creds: creds, trusted: true}
			if !creds && p.any {
				m.acao = "*"
			}
		} else {
			m = p.matchOrigin(r.Origin)
		}
	}
	if p.crossOriginProtection && !m.trusted && isUnsafeMethod(r.Method) && isCrossOrigin(r) {
		d.Status, d.Reason, d.Detail = statusCrossOriginRefused, ReasonCrossOriginRefused, clip(r.Method)
		d.Body = p.refusalBody
		d.add(headerContentType, contentTypeText, false)
		d.add(headerVary, varyOrigin, true)
		return
	}
	switch d.Kind {
	case KindNotCORS:
		d.Reason = ReasonNoOrigin
		if !p.anyToEveryone {
			d.add(headerVary, varyOrigin, true)
		}
	case KindActual:
		p.actual(d, m)
	case KindPreflight:
		p.preflight(d, r, m)
	}
}

func (p *Policy) actual(d *Decision, m originMatch) {
	if m.reason != ReasonAllowed {
		d.Reason = m.reason
		d.add(headerVary, varyOrigin, true)
		return
	}
	d.Allowed, d.Reason = true, ReasonAllowed
	d.add(headerAllowOrigin, m.acao, false)
	if m.creds {
		d.add(headerAllowCredentials, "true", false)
		if p.exposeCredsHeader != "" {
			d.add(headerExposeHeaders, p.exposeCredsHeader, false)
		}
	} else if p.exposeHeader != "" {
		d.add(headerExposeHeaders, p.exposeHeader, false)
	}
	if !p.anyToEveryone {
		d.add(headerVary, varyOrigin, true)
	}
}

func (p *Policy) preflight(d *Decision, r *Request, m originMatch) {
	d.Status = p.failureStatus
	if m.reason != ReasonAllowed {
		d.refuse(m.reason, "")
		return
	}
	method := r.AccessControlRequestMethod
	if len(method) > MaxNameLength || !isToken(method) {
		d.refuse(ReasonMethodMalformed, clip(method))
		return
	}
	if !p.listsMethod(method) && !isSafelistedMethod(method) && (!p.methodsAny || isForbiddenMethod(method)) {
		d.refuse(ReasonMethodNotAllowed, method)
		return
	}
	var rh requestHeadersResult
	if r.AccessControlRequestHeaders != "" {
		if rh = p.checkRequestHeaders(r.AccessControlRequestHeaders); rh.reason != ReasonAllowed {
			d.refuse(rh.reason, rh.detail)
			return
		}
	}
	privateNetwork := r.AccessControlRequestPrivateNetwork == "true"
	if privateNetwork && !p.allowPrivateNetwork {
		d.refuse(ReasonPrivateNetworkNotAllowed, "")
		return
	}

	d.Allowed, d.Status, d.Reason = true, p.successStatus, ReasonAllowed
	d.add(headerAllowOrigin, m.acao, false)
	if m.creds {
		d.add(headerAllowCredentials, "true", false)
	}
	switch {
	case p.methodsAny && m.creds:
		// "*" is a literal method name for credentialed requests.
		d.add(headerAllowMethods, method, false)
	case p.methodsAny:
		d.add(headerAllowMethods, "*", false)
	case p.methodsHeader != "":
		d.add(headerAllowMethods, p.methodsHeader, false)
	}
	if rh.last > rh.first {
		switch {
		case p.requestHeadersAny && !m.creds && !rh.auth:
			d.add(headerAllowHeaders, "*", false)
		case p.requestHeadersAny:
			// "*" is literal with credentials and never covers
			// Authorization: echo the (validated) requested names.
			d.add(headerAllowHeaders, r.AccessControlRequestHeaders[rh.first:rh.last], false)
		default:
			d.add(headerAllowHeaders, p.requestHeadersHeader, false)
		}
	}
	if p.maxAge != "" {
		d.add(headerMaxAge, p.maxAge, false)
	}
	if privateNetwork {
		d.add(headerAllowPrivateNetwork, "true", false)
	}
	d.add(headerVary, varyPreflight, true)
}

// listsMethod reports whether method is listed (byte-exact). Policies list
// few methods: a scan that compares lengths first beats hashing.
func (p *Policy) listsMethod(method string) bool {
	for _, m := range p.methodList {
		if len(m) == len(method) && m[0] == method[0] && m == method {
			return true
		}
	}
	return false
}

// clip bounds an untrusted value kept in a Decision's Detail, so that no
// message or log line grows with hostile input.
func clip(s string) string {
	if len(s) > MaxNameLength {
		return s[:MaxNameLength]
	}
	return s
}

// refuse completes a refused preflight decision.
func (d *Decision) refuse(reason Reason, detail string) {
	d.Reason, d.Detail = reason, detail
	d.add(headerVary, varyPreflight, true)
}

func (d *Decision) add(name, value string, appendValue bool) {
	// Field by field: a composite literal would be built in a temporary and
	// copied, which costs store-forwarding stalls on this hot path.
	h := &d.headers[d.n]
	h.Name, h.Value, h.Append = name, value, appendValue
	d.n++
}

// isUnsafeMethod reports whether cross-origin protection applies to a
// method: every method except GET, HEAD and OPTIONS (compared exactly, so
// "get" is protected too).
func isUnsafeMethod(m string) bool {
	return m != "GET" && m != "HEAD" && m != "OPTIONS"
}

// isCrossOrigin reports whether a browser marked the request cross-origin:
// by Sec-Fetch-Site (any value but "same-origin" and "none"), or, without
// it, by an Origin whose host and port differ from the request's Host.
// A request with neither header is not cross-origin (it does not come from
// a browser that could be tricked into sending it).
func isCrossOrigin(r *Request) bool {
	switch r.SecFetchSite {
	case "same-origin", "none":
		return false
	case "":
		return r.Origin != "" && !sameOrigin(r.Origin, r.Host)
	}
	return true
}

// sameOrigin reports whether origin designates the host (and port) of the
// request, case-insensitively, a missing port meaning the origin scheme's
// default port.
func sameOrigin(origin, host string) bool {
	if len(host) > maxHostPortLength {
		return false // no origin's host is that long: do not scan it
	}
	o, ok := parseRequestOrigin(origin)
	if !ok || o.scheme < 0 || host == "" {
		return false
	}
	h, port := splitRequestHost(host)
	if port == "" {
		port = defaultPorts[o.scheme]
	}
	oport := o.port
	if oport == "" {
		oport = defaultPorts[o.scheme]
	}
	return strings.EqualFold(h, o.host) && port == oport
}

// splitRequestHost splits a Host header into host and port ("" when absent).
func splitRequestHost(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end >= 0 {
			if rest := s[end+1:]; strings.HasPrefix(rest, ":") {
				return s[:end+1], rest[1:]
			}
			return s[:end+1], ""
		}
		return s, ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// Message returns a human sentence explaining the decision, such as
// "origin https://evil.example is not in policies/acme". Untrusted values
// that may be malformed are quoted. It allocates; keep it off the hot path.
func (d *Decision) Message() string {
	name := d.Policy
	if name == "" {
		name = "the policy"
	}
	var b strings.Builder
	if d.Mode == ModeReportOnly {
		b.WriteString("report only: ")
	}
	switch d.Reason {
	case ReasonAllowed:
		if d.Kind == KindPreflight {
			fmt.Fprintf(&b, "preflight from origin %s is allowed by %s", d.Origin, name)
		} else {
			fmt.Fprintf(&b, "origin %s is allowed by %s", d.Origin, name)
		}
	case ReasonNoOrigin:
		b.WriteString("request has no Origin header; it is not a CORS request")
	case ReasonOriginNotAllowed:
		fmt.Fprintf(&b, "origin %s is not in %s", quoteIfOdd(d.Origin), name)
	case ReasonOriginMalformed:
		fmt.Fprintf(&b, "origin %s is not a canonical origin (lower-case scheme://host[:port], no path, no default port, one origin)", strconv.Quote(d.Origin))
	case ReasonMethodNotAllowed:
		fmt.Fprintf(&b, "method %s is not allowed by %s (preflight from origin %s)", d.Detail, name, d.Origin)
	case ReasonMethodMalformed:
		fmt.Fprintf(&b, "Access-Control-Request-Method %s is not a valid method", strconv.Quote(d.Detail))
	case ReasonHeaderNotAllowed:
		fmt.Fprintf(&b, "request header %s is not allowed by %s (preflight from origin %s)", d.Detail, name, d.Origin)
	case ReasonHeadersMalformed:
		if d.Detail != "" {
			fmt.Fprintf(&b, "Access-Control-Request-Headers lists %s, which is not a valid header name", strconv.Quote(d.Detail))
		} else {
			fmt.Fprintf(&b, "Access-Control-Request-Headers is longer than %d bytes or lists more than %d names", MaxRequestHeadersBytes, MaxRequestHeaders)
		}
	case ReasonPrivateNetworkNotAllowed:
		fmt.Fprintf(&b, "private network access is not allowed by %s (preflight from origin %s)", name, d.Origin)
	case ReasonCrossOriginRefused:
		origin := "an unknown origin"
		if d.Origin != "" {
			origin = "origin " + quoteIfOdd(d.Origin)
		}
		fmt.Fprintf(&b, "cross-origin %s request from %s refused by %s: the origin is not trusted", quoteIfOdd(d.Detail), origin, name)
	case ReasonPolicyDisabled:
		fmt.Fprintf(&b, "%s is disabled", name)
	case ReasonNoPolicy:
		if d.Detail != "" {
			fmt.Fprintf(&b, "policy %s does not exist", quoteIfOdd(d.Detail))
		} else {
			b.WriteString("no policy governs this request")
		}
	default:
		fmt.Fprintf(&b, "decision %s", d.Reason)
	}
	return b.String()
}

// quoteIfOdd quotes s unless it is made of printable ASCII without spaces,
// so that log lines cannot be forged.
func quoteIfOdd(s string) string {
	if s == "" {
		return `""`
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}
