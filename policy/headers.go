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

// scanToken reports, in one pass, whether s is a token and whether it has
// ASCII upper-case letters.
func scanToken(s string) (token, upper bool) {
	if s == "" {
		return false, false
	}
	for i := range len(s) {
		c := s[i]
		if !tokenChars[c] {
			return false, false
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	return true, upper
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

// checkRequestHeaders checks every name listed in acrh. Each must be a
// token and allowed by the policy: listed (case-insensitively), or covered
// by "*" (never "authorization"). Values longer than MaxRequestHeadersBytes
// or with more than MaxRequestHeaders names are refused as a whole. It never
// allocates.
//
// It splits the list itself rather than with nextListElement, so that one
// pass over each name finds its end, checks that it is a token and notes
// upper-case letters.
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
	var buf [MaxNameLength]byte
	count := 0
	first := true
	for i := 0; i < len(acrh); {
		if c := acrh[i]; c == ',' || isOWS(c) {
			i++ // a separator, or whitespace before a name
			continue
		}
		start := i
		all, any := uint8(flagToken), uint8(0)
		for ; i < len(acrh) && acrh[i] != ','; i++ {
			f := tokenFlags[acrh[i]]
			all &= f
			any |= f
		}
		end := i
		for isOWS(acrh[end-1]) { // acrh[start] is not OWS
			end--
		}
		name := acrh[start:end]
		token, upper := all != 0, any&flagUpper != 0
		if end != i {
			// Trailing whitespace was scanned as non-token bytes.
			token, upper = scanToken(name)
		}
		count++
		if count > MaxRequestHeaders {
			res.reason = ReasonHeadersMalformed
			return res
		}
		if !token {
			res.reason, res.detail = ReasonHeadersMalformed, name
			return res
		}
		if first {
			res.first, first = start, false
		}
		res.last = end
		allowed := false
		isAuth := len(name) == len("authorization") && strings.EqualFold(name, "authorization")
		res.auth = res.auth || isAuth
		switch {
		case len(name) > p.maxHeaderLen:
			// Longer than every listed name: only "*" can allow it.
		case upper:
			n := copy(buf[:], name)
			lowerASCII(buf[:n])
			allowed = p.listsHeaderBytes(buf[:n])
		default:
			allowed = p.listsHeader(name)
		}
		if !allowed && (!p.requestHeadersAny || isAuth) {
			res.reason, res.detail = ReasonHeaderNotAllowed, name
			return res
		}
	}
	return res
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

// listsHeaderBytes is listsHeader for a name in a buffer.
func (p *Policy) listsHeaderBytes(lower []byte) bool {
	if p.requestHeaderList == nil {
		_, ok := p.requestHeaders[string(lower)]
		return ok
	}
	for _, h := range p.requestHeaderList {
		if len(h) == len(lower) && h[0] == lower[0] && h == string(lower) {
			return true
		}
	}
	return false
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}
