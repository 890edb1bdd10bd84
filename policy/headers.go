package policy

import "strings"

// tokenChars marks the tchar bytes of RFC 9110 section 5.6.2.
var tokenChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isToken reports whether s is a non-empty RFC 9110 token (method and
// header field names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

// forbiddenRequestHeaders are the Fetch standard's forbidden request-header
// names (browsers set them; scripts cannot), lower case. Names starting with
// "proxy-" or "sec-" are forbidden too.
var forbiddenRequestHeaders = map[string]struct{}{
	"accept-charset":                 {},
	"accept-encoding":                {},
	"access-control-request-headers": {},
	"access-control-request-method":  {},
	"connection":                     {},
	"content-length":                 {},
	"cookie":                         {},
	"cookie2":                        {},
	"date":                           {},
	"dnt":                            {},
	"expect":                         {},
	"host":                           {},
	"keep-alive":                     {},
	"origin":                         {},
	"referer":                        {},
	"set-cookie":                     {},
	"te":                             {},
	"trailer":                        {},
	"transfer-encoding":              {},
	"upgrade":                        {},
	"via":                            {},
}

func isForbiddenRequestHeader(lower string) bool {
	_, ok := forbiddenRequestHeaders[lower]
	return ok || strings.HasPrefix(lower, "proxy-") || strings.HasPrefix(lower, "sec-")
}

// isResponseOnlyHeader reports whether the lower-case name is one only
// responses carry: the CORS answers (Access-Control-Allow-*,
// -Expose-Headers, -Max-Age) and cookies set by the server. Listing one as
// an allowed request header means the CORS roles are mixed up.
func isResponseOnlyHeader(lower string) bool {
	switch lower {
	case "access-control-expose-headers", "access-control-max-age", "set-cookie", "set-cookie2":
		return true
	}
	return strings.HasPrefix(lower, "access-control-allow-")
}

// isRequestOnlyHeader reports whether the lower-case name is one only CORS
// requests carry (Origin, Access-Control-Request-*): exposing it as a
// response header does nothing.
func isRequestOnlyHeader(lower string) bool {
	return lower == "origin" || strings.HasPrefix(lower, "access-control-request-")
}

// isForbiddenMethod reports whether m is one of the methods the Fetch
// standard forbids (CONNECT, TRACE, TRACK), in any case.
func isForbiddenMethod(m string) bool {
	return strings.EqualFold(m, "CONNECT") || strings.EqualFold(m, "TRACE") || strings.EqualFold(m, "TRACK")
}

// normalizeMethod upper-cases the six methods the Fetch standard
// normalizes; other methods are case-sensitive and returned unchanged.
func normalizeMethod(m string) string {
	for _, n := range [...]string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"} {
		if strings.EqualFold(m, n) {
			return n
		}
	}
	return m
}

// isSafelistedMethod reports whether m is a CORS-safelisted method, which a
// browser's preflight check always accepts (byte-exact, Fetch).
func isSafelistedMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "POST"
}

// isOWS reports whether c is optional whitespace (SP or HTAB).
func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// nextListElement returns the next non-empty element of the comma-separated
// list s at or after index i, without surrounding SP/HTAB, as s[start:end].
// ok is false when no element is left. It never allocates; next is where to
// continue.
func nextListElement(s string, i int) (start, end, next int, ok bool) {
	for i < len(s) {
		j := strings.IndexByte(s[i:], ',')
		if j < 0 {
			j = len(s)
		} else {
			j += i
		}
		start, end = i, j
		for start < end && isOWS(s[start]) {
			start++
		}
		for end > start && isOWS(s[end-1]) {
			end--
		}
		i = j + 1
		if start < end {
			return start, end, i, true
		}
	}
	return 0, 0, len(s), false
}

// requestHeadersResult is the outcome of checking a preflight's
// Access-Control-Request-Headers against a policy.
type requestHeadersResult struct {
	reason Reason // ReasonAllowed, ReasonHeaderNotAllowed or ReasonHeadersMalformed
	detail string // the offending element
	// first and last delimit the requested names in the request value
	// (first == last: none were requested).
	first, last int
	auth        bool // "authorization" was requested
}

// Flags of tokenFlags.
const (
	flagToken = 1 << iota // a tchar
	flagUpper             // an ASCII upper-case letter (a tchar too)
)

// tokenFlags classifies bytes for checkRequestHeaders, which ANDs and ORs
// them over a name so that its scan has no branch per byte.
var tokenFlags = func() (t [256]uint8) {
	for c, ok := range tokenChars {
		if ok {
			t[c] = flagToken
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= flagUpper
	}
	return t
}()

// Tolerances of checkRequestHeaders for what proxies may add to the
// Access-Control-Request-Headers value that browsers send.
const (
	// maxACRHEmptyElements is how many empty list elements a value may hold
	// in total (joined empty field lines, doubled commas).
	maxACRHEmptyElements = 16
	// maxACRHOWS is how many SP or HTAB bytes may surround one element.
	maxACRHOWS = 2
)

// checkRequestHeaders checks a preflight's Access-Control-Request-Headers
// as browsers send it: lower-case names, sorted, without duplicates, joined
// with ",". It tolerates what proxies between them legitimately produce:
// several field lines joined with "," or ", " (at most maxACRHOWS bytes of
// SP/HTAB around each element) and at most maxACRHEmptyElements empty
// elements. Anything else is ReasonHeadersMalformed. Each name must be
// allowed by the policy: listed, or covered by "*" (never
// "authorization"). Values longer than MaxRequestHeadersBytes or with more
// than MaxRequestHeaders names are refused as a whole.
//
// The work is bounded whatever the input, and it never allocates: each
// byte is read once, names longer than any the policy lists (or than
// MaxNameLength under "*") are refused before their end is sought, and
// since names must increase strictly, a policy without "*" accepts at most
// as many bytes as its own list holds.
func (p *Policy) checkRequestHeaders(acrh string) requestHeadersResult {
	res := requestHeadersResult{reason: ReasonAllowed}
	if len(acrh) > MaxRequestHeadersBytes {
		res.reason = ReasonHeadersMalformed
		return res
	}
	if acrh == p.requestHeadersCanon && acrh != "" {
		// What browsers send when a script uses every listed header: known
		// to be allowed, one token per element, no whitespace.
		res.last, res.auth = len(acrh), p.requestHeadersCanonAuth
		return res
	}
	maxLen := p.maxHeaderLen
	if p.requestHeadersAny {
		maxLen = MaxNameLength
	}
	count, empty := 0, 0
	prev := ""
	for i := 0; ; i++ {
		// Whitespace loops stop one byte past the tolerance: a run of
		// whitespace costs no more than a short one.
		ows := 0
		for i < len(acrh) && isOWS(acrh[i]) && ows <= maxACRHOWS {
			i++
			ows++
		}
		if ows > maxACRHOWS {
			res.reason = ReasonHeadersMalformed
			return res
		}
		start := i
		all, any := uint8(flagToken), uint8(0)
		for ; i < len(acrh) && acrh[i] != ',' && !isOWS(acrh[i]); i++ {
			if i-start >= maxLen {
				// Longer than any name the policy allows: refused without
				// reading the rest.
				res.reason, res.detail = ReasonHeaderNotAllowed, clipElement(acrh[start:])
				return res
			}
			f := tokenFlags[acrh[i]]
			all &= f
			any |= f
		}
		name := acrh[start:i]
		for i < len(acrh) && isOWS(acrh[i]) && ows <= maxACRHOWS {
			i++
			ows++
		}
		switch {
		case ows > maxACRHOWS:
			res.reason, res.detail = ReasonHeadersMalformed, name
			return res
		case i < len(acrh) && acrh[i] != ',':
			// Whitespace inside an element.
			res.reason, res.detail = ReasonHeadersMalformed, clipElement(acrh[start:])
			return res
		case name == "":
			if empty++; empty > maxACRHEmptyElements {
				res.reason = ReasonHeadersMalformed
				return res
			}
		default:
			if count++; count > MaxRequestHeaders {
				res.reason = ReasonHeadersMalformed
				return res
			}
			// Browsers send tokens, lower-cased and strictly increasing.
			if all == 0 || any&flagUpper != 0 || prev != "" && name <= prev {
				res.reason, res.detail = ReasonHeadersMalformed, name
				return res
			}
			if prev == "" {
				res.first = start
			}
			res.last, prev = start+len(name), name
			isAuth := name == "authorization"
			res.auth = res.auth || isAuth
			if !p.listsHeader(name) && (!p.requestHeadersAny || isAuth) {
				res.reason, res.detail = ReasonHeaderNotAllowed, name
				return res
			}
		}
		if i >= len(acrh) {
			return res
		}
	}
}

// listsHeader reports whether the lower-case name is a listed request
// header. Short lists are scanned: comparing the length and first byte
// rejects most names before a string comparison, which beats hashing.
func (p *Policy) listsHeader(lower string) bool {
	if p.requestHeaderList == nil {
		_, ok := p.requestHeaders[lower]
		return ok
	}
	for _, h := range p.requestHeaderList {
		if len(h) == len(lower) && h[0] == lower[0] && h == lower {
			return true
		}
	}
	return false
}

// clipElement returns the list element at the start of s, clipped: a
// detail for messages that costs at most MaxNameLength bytes of reading.
func clipElement(s string) string {
	s = clip(s)
	if j := strings.IndexByte(s, ','); j >= 0 {
		s = s[:j]
	}
	return strings.TrimRight(s, " \t")
}
