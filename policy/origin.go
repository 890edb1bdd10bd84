package policy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Schemes an origin pattern may use. Browsers send tuple origins only for
// http(s) pages that matter to CORS; other schemes serialize as "null".
const (
	schemeHTTP = iota
	schemeHTTPS
	numSchemes
	// schemeOther marks a pattern of another scheme (exact only).
	schemeOther = -1
)

var (
	schemeNames  = [numSchemes]string{"http", "https"}
	defaultPorts = [numSchemes]string{"80", "443"}
)

// idnaProfile maps and validates host names of patterns and hosts. It is
// strict (UTS #46 non-transitional with STD3 rules, the Bidi and ContextJ
// rules) but does not apply CheckHyphens, which would refuse real host
// names such as "r3---sn-abc.example"; leading and trailing hyphens are
// refused separately. The DNS length limits are checked by dnsNameProblem,
// whose messages say which limit a host passes.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.CheckHyphens(false),
)

// DNS limits on a name in ASCII form (RFC 1035 section 2.3.4), without a
// trailing dot.
const (
	maxDNSName  = 253
	maxDNSLabel = 63
)

// dnsNameProblem checks the ASCII host name a against the DNS limits.
func dnsNameProblem(a string) *problem {
	if len(a) > maxDNSName {
		return problemf("check the host name: a DNS name is at most 253 bytes (in ASCII form)",
			"host is %d bytes long; DNS names are at most %d", len(a), maxDNSName)
	}
	// Labels are named by position: a is the ASCII form, which may differ
	// from what the operator wrote.
	i := 0
	for label := range strings.SplitSeq(a, ".") {
		i++
		switch {
		case label == "":
			return problemf("remove the empty label (consecutive or leading dots)", "host has an empty label")
		case len(label) > maxDNSLabel:
			return problemf("check the host name: a DNS label is at most 63 bytes (in ASCII form)",
				"host label %d (from the left) is %d bytes long; DNS labels are at most %d", i, len(label), maxDNSLabel)
		}
	}
	return nil
}

// wildcardLengthProblem refuses a subdomain wildcard over suffix (ASCII)
// when no host under it fits in a DNS name: "*.suffix" counts as the
// shortest such host, "x.suffix".
// what names the things the wildcard would match ("origin", "host").
func wildcardLengthProblem(suffix, what string) *problem {
	if n := len(suffix) + 2; n > maxDNSName {
		return problemf("shorten the suffix, or list the origins exactly",
			"the wildcard host (\"*.\" and the suffix, in ASCII form) is %d bytes long; DNS names are at most %d, so no %s can match it", n, maxDNSName, what)
	}
	return nil
}

// patternKind is the kind of an origin pattern.
type patternKind uint8

const (
	patternExact      patternKind = iota // https://app.example.com
	patternSubdomains                    // https://*.example.com
	patternAnyPort                       // http://localhost:*
	patternAny                           // *
	patternNull                          // null
)

// pattern is a parsed, normalized origin pattern.
type pattern struct {
	kind   patternKind
	canon  string // canonical form, as stored
	scheme int
	// host is the host of exact and port-wildcard patterns ("[::1]" for IPv6)
	// and the suffix after "*." for subdomain wildcards.
	host string
	port string // "" for the scheme's default port
	ip   bool   // host is an IP literal
	// anyPortToo: a subdomain wildcard that also matches any port.
	anyPortToo bool
}

// problem is one validation failure: what is wrong and how to fix it.
type problem struct{ reason, fix string }

func problemf(fix, format string, args ...any) *problem {
	return &problem{reason: fmt.Sprintf(format, args...), fix: fix}
}

// NormalizeOrigin parses an origin rule pattern and returns its canonical,
// stored form. Patterns are one of:
//
//   - an exact origin: "https://app.example.com", "http://localhost:3000",
//     "http://[::1]:8080", "https://bücher.example";
//   - a subdomain wildcard: "https://*.example.com" (one or more labels
//     below example.com, never example.com itself);
//   - a port wildcard: "http://localhost:*" (any port, including none);
//   - both: "https://*.example.com:*";
//   - "*": any origin ("null" and malformed ones included: the answer does
//     not depend on the Origin);
//   - "null": the opaque origin;
//   - the exact origin of another scheme that browsers send: an extension's
//     ("chrome-extension://id", "moz-extension://uuid") or an app shell's
//     ("capacitor://localhost", "tauri://localhost"), kept as written but
//     for the scheme's case.
//
// For http and https, the scheme and host are lower-cased, an IDN host is
// converted to punycode, and the default port (80 for http, 443 for https)
// is dropped. Everything that is not part of an origin is refused rather
// than dropped: a path (including a lone trailing "/"), a query, a fragment,
// userinfo, whitespace, a port outside 1..65535 or with leading zeros, an
// IP literal not written canonically ("http://127.1", "http://[::0001]"),
// host labels that fail IDNA (UTS #46) checks or start or end with a
// hyphen, and a trailing dot on a subdomain wildcard or an IP address. A
// trailing dot is otherwise kept (a distinct origin), and underscores are
// accepted in ASCII labels. NormalizeOrigin is idempotent: normalizing its output returns
// the output.
//
// The error is a *FieldError whose Field is empty; its Fix tells the
// operator what to write instead.
func NormalizeOrigin(s string) (string, error) {
	p, prob := parsePattern(s)
	if prob != nil {
		return "", &FieldError{Value: s, Reason: prob.reason, Fix: prob.fix}
	}
	return p.canon, nil
}

// NormalizeHost parses a request host that a policy governs (Config.Hosts)
// and returns its canonical form. A host is a domain name
// ("api.example.com"), a wildcard covering one or more labels below a domain
// ("*.api.example.com", never the apex), or an IP literal ("127.0.0.1",
// "[::1]"), with an optional port ("api.example.com:8443"). A host without a
// port governs every port; a host with one governs only that port. Names are
// lower-cased and IDNs converted to punycode; the rules for labels and IP
// literals are those of NormalizeOrigin. NormalizeHost is idempotent.
//
// The error is a *FieldError whose Field is empty.
func NormalizeHost(s string) (string, error) {
	h, prob := normalizeHostEntry(s)
	if prob != nil {
		return "", &FieldError{Value: s, Reason: prob.reason, Fix: prob.fix}
	}
	return h, nil
}

const patternFixExample = `write an origin such as "https://app.example.com", a wildcard such as "https://*.example.com", "*" or "null"`

// parsePattern parses and normalizes an origin rule pattern.
func parsePattern(s string) (pattern, *problem) {
	if s == "" {
		return pattern{}, problemf(patternFixExample, "pattern is empty")
	}
	if len(s) > MaxPatternLength {
		return pattern{}, problemf("shorten the pattern; origins are scheme://host[:port]",
			"pattern is %d bytes long; the limit is %d", len(s), MaxPatternLength)
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return pattern{}, problemf("remove the whitespace and control characters",
				"pattern contains whitespace or a control character at byte %d", i)
		}
	}
	if strings.IndexByte(s, ',') >= 0 {
		return pattern{}, problemf("write one rule per origin", "pattern lists several origins")
	}
	switch {
	case s == "*":
		return pattern{kind: patternAny, canon: "*"}, nil
	case strings.EqualFold(s, "null"):
		return pattern{kind: patternNull, canon: "null"}, nil
	}
	rawScheme, rest, found := strings.Cut(s, "://")
	if !found {
		fix := patternFixExample
		if !strings.ContainsAny(s, ":/") {
			fix = fmt.Sprintf("add the scheme: write %q", "https://"+s)
		}
		return pattern{}, problemf(fix, "pattern has no scheme (http:// or https://)")
	}
	scheme := strings.ToLower(rawScheme)
	var p pattern
	switch scheme {
	case "http":
		p.scheme = schemeHTTP
	case "https":
		p.scheme = schemeHTTPS
	case "*":
		return pattern{}, problemf("write one rule per scheme, preferably https only",
			"the scheme cannot be a wildcard")
	default:
		if unsupportedSchemes[scheme] || !isScheme(scheme) {
			return pattern{}, problemf("use an http or https origin, or the exact origin an extension or app shell sends (chrome-extension://id, capacitor://localhost)",
				"scheme %q is not supported; browsers never send it as an origin", scheme)
		}
		return parseOtherPattern(scheme, rest)
	}
	if i := strings.IndexAny(rest, "/?#\\"); i >= 0 {
		base := scheme + "://" + rest[:i]
		switch {
		case rest[i:] == "/":
			return pattern{}, problemf(fmt.Sprintf("remove the trailing slash: write %q", base),
				"pattern ends with a slash; an origin has no path")
		case rest[i] == '?':
			return pattern{}, problemf(fmt.Sprintf("remove the query: write %q", base),
				"pattern has a query; an origin is scheme://host[:port]")
		case rest[i] == '#':
			return pattern{}, problemf(fmt.Sprintf("remove the fragment: write %q", base),
				"pattern has a fragment; an origin is scheme://host[:port]")
		default:
			return pattern{}, problemf(fmt.Sprintf("remove the path: write %q", base),
				"pattern has a path; an origin is scheme://host[:port]")
		}
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		return pattern{}, problemf(fmt.Sprintf("remove the user information: write %q", scheme+"://"+rest[i+1:]),
			"pattern has user information (user:password@); an origin has none")
	}
	host, port, hasPort, prob := splitHostPort(rest)
	if prob != nil {
		return pattern{}, prob
	}
	if hasPort {
		switch port {
		case "*":
			p.kind = patternAnyPort
		default:
			canonPort, prob := checkPort(port)
			if prob != nil {
				return pattern{}, prob
			}
			if canonPort != defaultPorts[p.scheme] {
				p.port = canonPort
			}
		}
	}
	if strings.HasPrefix(host, "*.") {
		// "https://*.example.com:*": any subdomain on any port.
		p.anyPortToo = p.kind == patternAnyPort
		p.kind = patternSubdomains
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		if host == "*" {
			return pattern{}, problemf(`use the pattern "*" for any origin, or a subdomain wildcard such as "https://*.example.com"`,
				"the host cannot be only a wildcard")
		}
		return pattern{}, problemf(`write "*" as the whole leftmost label, as in "https://*.example.com"`,
			"* may only be the whole leftmost label of the host")
	}
	// A trailing dot names a distinct origin (browsers send it as written):
	// kept, never dropped. Wildcards do not combine with it.
	trailingDot := false
	if p.kind != patternSubdomains && len(host) > 1 && host[len(host)-1] == '.' && host[len(host)-2] != '.' {
		host, trailingDot = host[:len(host)-1], true
	}
	h, ip, prob := normalizeOriginHostname(host)
	if prob != nil {
		return pattern{}, prob
	}
	if trailingDot {
		if ip {
			return pattern{}, problemf(fmt.Sprintf("remove the trailing dot: %q", host), "an IP address with a trailing dot is not an origin browsers send")
		}
		h += "."
	}
	if ip && p.kind == patternSubdomains {
		return pattern{}, problemf("list the IP origins exactly",
			"a subdomain wildcard cannot cover an IP address")
	}
	if p.kind == patternSubdomains {
		if prob := wildcardLengthProblem(h, "origin"); prob != nil {
			return pattern{}, prob
		}
	}
	p.host, p.ip = h, ip

	var b strings.Builder
	b.WriteString(schemeNames[p.scheme])
	b.WriteString("://")
	if p.kind == patternSubdomains {
		b.WriteString("*.")
	}
	b.WriteString(h)
	switch {
	case p.kind == patternAnyPort || p.anyPortToo:
		b.WriteString(":*")
	case p.port != "":
		b.WriteByte(':')
		b.WriteString(p.port)
	}
	p.canon = b.String()
	return p, nil
}

// unsupportedSchemes are schemes whose documents browsers never send as a
// CORS Origin (file: and data: documents send "null"; WebSocket and FTP
// requests carry an http(s) origin or none).
var unsupportedSchemes = map[string]bool{
	"file": true, "data": true, "blob": true, "about": true, "javascript": true,
	"ws": true, "wss": true, "ftp": true, "filesystem": true,
}

// isScheme reports whether s is a URL scheme: a letter, then letters,
// digits, "+", "-" or ".".
func isScheme(s string) bool {
	for i := range len(s) {
		c := s[i]
		letter := 'a' <= c && c <= 'z'
		other := '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
		if !letter && (i == 0 || !other) {
			return false
		}
	}
	return s != ""
}

// parseOtherPattern parses the exact origin of another scheme that browsers
// send (a browser extension's chrome-extension://id, moz-extension://uuid,
// safari-web-extension://uuid; an app shell's capacitor://localhost,
// ionic://localhost, tauri://localhost). Its host is opaque to the URL
// standard, so it is kept as written: the request must carry it byte for
// byte. Only exact patterns exist for these schemes.
func parseOtherPattern(scheme, rest string) (pattern, *problem) {
	base := scheme + "://" + rest
	switch i := strings.IndexAny(rest, "/?#\\@*"); {
	case rest == "":
		return pattern{}, problemf(fmt.Sprintf("write the origin the browser sends, such as %q", scheme+"://localhost"), "pattern has no host")
	case i >= 0 && rest[i] == '*':
		return pattern{}, problemf("list each origin of this scheme exactly", "wildcards apply only to http and https origins")
	case i >= 0:
		return pattern{}, problemf(fmt.Sprintf("write only the origin: %q", scheme+"://"+rest[:i]), "pattern has more than scheme://host")
	}
	for i := range len(rest) {
		if c := rest[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' && c != ':' {
			return pattern{}, problemf("write the origin the browser sends", "host contains %q", c)
		}
	}
	return pattern{kind: patternExact, canon: base, scheme: schemeOther, host: rest}, nil
}

// normalizeOriginHostname is normalizeHostname for origin patterns, which
// also accept underscores in ASCII labels, as browsers do in origins
// (IDNA's STD3 rules refuse them): the host is checked with each
// underscore read as a letter, and kept with its underscores.
func normalizeOriginHostname(host string) (string, bool, *problem) {
	if strings.IndexByte(host, '_') < 0 {
		return normalizeHostname(host)
	}
	for i := range len(host) {
		if host[i] >= 0x80 {
			return normalizeHostname(host) // refused: underscores only in ASCII names
		}
	}
	lower := strings.ToLower(host)
	h, ip, prob := normalizeHostname(strings.ReplaceAll(lower, "_", "a"))
	if prob != nil || ip || h != strings.ReplaceAll(lower, "_", "a") {
		if prob == nil {
			prob = problemf("check the spelling of the host name", "host %q is not a valid domain name", host)
		}
		return "", false, prob
	}
	return lower, false, nil
}

// splitHostPort splits "host[:port]" where host may be a bracketed IPv6
// literal.
func splitHostPort(s string) (host, port string, hasPort bool, prob *problem) {
	if s == "" {
		return "", "", false, problemf(patternFixExample, "pattern has no host")
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, problemf("close the IPv6 address with ]", "IPv6 address has no closing bracket")
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if rest[0] != ':' {
			return "", "", false, problemf("write [address]:port", "unexpected %q after the IPv6 address", rest)
		}
		return host, rest[1:], true, nil
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return s, "", false, nil
	}
	if strings.IndexByte(s[i+1:], ':') >= 0 {
		return "", "", false, problemf("write IPv6 addresses in brackets, as in \"http://[::1]:8080\"",
			"host has more than one colon")
	}
	if i == 0 {
		return "", "", false, problemf(patternFixExample, "pattern has no host")
	}
	return s[:i], s[i+1:], true, nil
}

// checkPort validates a port number written canonically.
func checkPort(port string) (string, *problem) {
	if port == "" {
		return "", problemf("remove the colon or write a port number", "port is empty")
	}
	for i := range len(port) {
		if port[i] < '0' || port[i] > '9' {
			return "", problemf("write a port number between 1 and 65535, or \":*\" for any port",
				"port %q is not a number", port)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", problemf("write a port number between 1 and 65535", "port %s is out of range", port)
	}
	if c := strconv.Itoa(n); c != port {
		return "", problemf(fmt.Sprintf("write the port without leading zeros: %s", c),
			"port %q has leading zeros; browsers never send them", port)
	}
	return port, nil
}

// normalizeHostname normalizes a domain name or IP literal (IPv6 in
// brackets), without wildcard or port.
func normalizeHostname(h string) (string, bool, *problem) {
	if h == "" {
		return "", false, problemf(patternFixExample, "host is empty")
	}
	if h[0] == '[' {
		if h[len(h)-1] != ']' {
			return "", false, problemf("write IPv6 addresses in brackets, as in [::1]", "IPv6 address is not bracketed")
		}
		inner := h[1 : len(h)-1]
		a, err := netip.ParseAddr(inner)
		switch {
		case err != nil:
			return "", false, problemf("write a valid IPv6 address, such as [::1]", "%q is not a valid IPv6 address", inner)
		case a.Zone() != "":
			return "", false, problemf("remove the zone identifier (from the % sign on)", "IPv6 zone identifiers never appear in origins")
		case !a.Is6():
			return "", false, problemf(fmt.Sprintf("write IPv4 addresses without brackets: %s", a), "%q is an IPv4 address in brackets", inner)
		}
		var buf [maxIPv6Len]byte
		canon := string(appendIPv6(buf[:0], a.As16()))
		if canon != strings.ToLower(inner) {
			return "", false, problemf(fmt.Sprintf("write the address as browsers serialize it: [%s]", canon),
				"IPv6 address [%s] is not in canonical form", inner)
		}
		return "[" + canon + "]", true, nil
	}
	if h[len(h)-1] == '.' {
		return "", false, problemf(fmt.Sprintf("remove the trailing dot: %q", strings.TrimSuffix(h, ".")),
			"host ends with a dot")
	}
	for i := range len(h) {
		c := h[i]
		if c >= 0x80 || c == '.' || c == '-' || isAlnum(c) {
			continue
		}
		return "", false, problemf("use only letters, digits, hyphens and dots in host names",
			"host contains %q, which is not allowed in a domain name", c)
	}
	if strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return "", false, problemf("remove the empty label (consecutive or leading dots)", "host has an empty label")
	}
	if !utf8.ValidString(h) {
		return "", false, problemf("write the host name in UTF-8", "host is not valid UTF-8")
	}
	a, err := idnaProfile.ToASCII(h)
	if err == nil {
		// The stored form must be stable: converting it again must give it
		// back, or the stored rule would not match what browsers send.
		if again, err2 := idnaProfile.ToASCII(a); err2 != nil || again != a {
			err = fmt.Errorf("%q does not convert back to itself", a)
		}
	}
	if err != nil {
		return "", false, problemf("check the spelling of the host name; internationalized names must pass IDNA (UTS #46) validation",
			"host %q is not a valid domain name (%v)", h, err)
	}
	if prob := dnsNameProblem(a); prob != nil {
		return "", false, prob
	}
	if endsInNumber(a) {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && ip.String() == a {
			return a, true, nil
		}
		return "", false, problemf("write IPv4 addresses as four decimal numbers, as in \"127.0.0.1\"",
			"%q is not a canonical IPv4 address (a host whose last label is a number is an IPv4 address)", h)
	}
	for label := range strings.SplitSeq(a, ".") {
		if strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", false, problemf("remove the leading or trailing hyphen", "host label %q starts or ends with a hyphen", label)
		}
	}
	return a, false, nil
}

// normalizeHostEntry normalizes a Config.Hosts entry.
func normalizeHostEntry(s string) (string, *problem) {
	const fix = `write a host such as "api.example.com", "*.api.example.com" or "api.example.com:8443"`
	if s == "" {
		return "", problemf(fix, "host is empty")
	}
	if len(s) > MaxPatternLength {
		return "", problemf("shorten the host", "host is %d bytes long; the limit is %d", len(s), MaxPatternLength)
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return "", problemf("remove the whitespace and control characters",
				"host contains whitespace or a control character at byte %d", i)
		}
	}
	if _, after, found := strings.Cut(s, "://"); found {
		return "", problemf(fmt.Sprintf("remove the scheme: write %q", after), "a host has no scheme")
	}
	if i := strings.IndexAny(s, "/?#\\@"); i >= 0 {
		return "", problemf(fix, "host contains %q", s[i])
	}
	host, port, hasPort, prob := splitHostPort(s)
	if prob != nil {
		return "", prob
	}
	if hasPort {
		if port == "*" {
			return "", problemf("omit the port: a host without a port governs every port", "a host cannot have a port wildcard")
		}
		if port, prob = checkPort(port); prob != nil {
			return "", prob
		}
	}
	wild := strings.HasPrefix(host, "*.")
	if wild {
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return "", problemf(`write "*" as the whole leftmost label, as in "*.api.example.com"`,
			"* may only be the whole leftmost label of the host")
	}
	h, ip, prob := normalizeHostname(host)
	if prob != nil {
		return "", prob
	}
	if wild && ip {
		return "", problemf("list the IP addresses exactly", "a wildcard cannot cover an IP address")
	}
	if wild {
		if prob := wildcardLengthProblem(h, "host"); prob != nil {
			return "", prob
		}
	}
	if wild {
		h = "*." + h
	}
	if hasPort {
		h += ":" + port
	}
	return h, nil
}

// endsInNumber reports whether the URL standard parses host as an IPv4
// address: its last label (ignoring one trailing dot) is decimal digits or
// 0x-prefixed hex. host must be lower case.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if allDigits(last) {
		return true
	}
	if !strings.HasPrefix(last, "0x") {
		return false
	}
	for i := 2; i < len(last); i++ {
		if !isHex(last[i]) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}

// maxIPv6Len is the length of the longest IPv6 serialization (8 groups of 4).
const maxIPv6Len = 39

// appendIPv6 appends the URL-standard serialization of an IPv6 address:
// lower-case hex groups without leading zeros, the first longest run of two
// or more zero groups compressed to "::", and never a dotted IPv4 suffix
// (which is where it differs from netip.Addr.String).
func appendIPv6(dst []byte, a [16]byte) []byte {
	var g [8]uint16
	for i := range g {
		g[i] = uint16(a[2*i])<<8 | uint16(a[2*i+1])
	}
	bestStart, bestLen := -1, 1
	for i := 0; i < 8; {
		if g[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && g[j] == 0 {
			j++
		}
		if j-i > bestLen {
			bestStart, bestLen = i, j-i
		}
		i = j
	}
	const hexDigits = "0123456789abcdef"
	for i := 0; i < 8; i++ {
		if i == bestStart {
			dst = append(dst, ':', ':')
			i += bestLen - 1
			continue
		}
		if i > 0 && i != bestStart+bestLen {
			dst = append(dst, ':')
		}
		v := g[i]
		started := false
		for shift := 12; shift >= 0; shift -= 4 {
			d := v >> uint(shift) & 0xf
			if d != 0 || started || shift == 0 {
				dst = append(dst, hexDigits[d])
				started = true
			}
		}
	}
	return dst
}

// parseIPv6 parses an IPv6 address written with hex groups and at most one
// "::" (no dotted IPv4 suffix, no zone), without allocating.
func parseIPv6(s string) (a [16]byte, ok bool) {
	var g [8]uint16
	n, gap := 0, -1
	i := 0
	if strings.HasPrefix(s, "::") {
		gap, i = 0, 2
		if len(s) == 2 {
			return a, true
		}
	}
	for i < len(s) {
		if n == 8 {
			return a, false
		}
		var v uint32
		j := i
		for j < len(s) && j-i < 5 {
			d, ok := hexValue(s[j])
			if !ok {
				break
			}
			v = v<<4 | uint32(d)
			j++
		}
		if j == i || j-i > 4 {
			return a, false
		}
		g[n] = uint16(v)
		n++
		i = j
		if i == len(s) {
			break
		}
		if s[i] != ':' {
			return a, false
		}
		i++
		if i < len(s) && s[i] == ':' {
			if gap >= 0 {
				return a, false
			}
			gap = n
			i++
			if i == len(s) {
				break
			}
		} else if i == len(s) {
			return a, false // trailing single colon
		}
	}
	switch {
	case gap < 0 && n != 8:
		return a, false
	case gap >= 0 && n > 7:
		return a, false
	}
	var out [8]uint16
	if gap < 0 {
		out = g
	} else {
		copy(out[:gap], g[:gap])
		tail := n - gap
		copy(out[8-tail:], g[gap:n])
	}
	for k, v := range out {
		binary.BigEndian.PutUint16(a[2*k:], v)
	}
	return a, true
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// maxHostPortLength is the longest host[:port] of an http(s) origin: a
// 253-byte DNS name, a trailing dot and ":65535". Longer ones are refused
// before being scanned.
const maxHostPortLength = 253 + 1 + 6

// reqOrigin is a request Origin parsed by parseRequestOrigin.
type reqOrigin struct {
	scheme   int    // schemeHTTP, schemeHTTPS, or -1 for another scheme
	hostport string // everything after "://"
	host     string // host without port; IPv6 in brackets
	port     string // "" when absent
	ip       bool
	// dots holds the positions in host of its last len(dots) dots, as a
	// ring indexed by dot number, and ndots counts them, so that wildcard
	// matching needs no second pass over the host.
	dots  [8]uint8
	ndots int
}

// parseRequestOrigin checks that s is an origin in the serialization that
// browsers send (lower-case scheme and host, no default port, no path,
// canonical IP literals) and splits it. It does not allocate. ok is false
// for malformed origins; "null" is handled by the caller.
func parseRequestOrigin(s string) (reqOrigin, bool) {
	var o reqOrigin
	ok := o.parse(s)
	return o, ok
}

// parse is parseRequestOrigin into o, which must be zero. It fills o in
// place: the hot path would otherwise copy the struct.
func (o *reqOrigin) parse(s string) bool {
	var rest string
	switch {
	case strings.HasPrefix(s, "https://"):
		o.scheme, rest = schemeHTTPS, s[len("https://"):]
	case strings.HasPrefix(s, "http://"):
		o.scheme, rest = schemeHTTP, s[len("http://"):]
	default:
		return o.parseOther(s)
	}
	o.hostport = rest
	if rest == "" || len(rest) > maxHostPortLength {
		return false
	}
	var after string
	if rest[0] == '[' {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return false
		}
		inner := rest[1:end]
		a, ok6 := parseIPv6(inner)
		if !ok6 {
			return false
		}
		var buf [maxIPv6Len]byte
		if string(appendIPv6(buf[:0], a)) != inner {
			return false
		}
		o.host, after, o.ip = rest[:end+1], rest[end+1:], true
	} else {
		i := 0
		lastLabel := 0 // start of the current label
	scan:
		for ; i < len(rest); i++ {
			cls := hostChars[rest[i]]
			if cls == hostLabelChar {
				continue // the common case, kept tight
			}
			switch cls {
			case hostDot:
				if i == lastLabel {
					return false // leading dot or empty label
				}
				lastLabel = i + 1
				o.dots[uint(o.ndots)%uint(len(o.dots))] = uint8(i) // truncates past 255; only read for hosts of at most 253 bytes
				o.ndots++
			case hostColon:
				break scan
			default:
				return false
			}
		}
		o.host, after = rest[:i], rest[i:]
		if o.host == "" {
			return false
		}
		// Only the last label can make the host an IPv4 address (the URL
		// standard's "ends in a number"); a trailing dot defers to the
		// label before it.
		if last := rest[lastLabel:i]; last == "" || '0' <= last[0] && last[0] <= '9' {
			if endsInNumber(o.host) {
				if !isCanonicalIPv4(o.host) {
					return false
				}
				o.ip = true
			}
		}
	}
	if after == "" {
		return true
	}
	if after[0] != ':' {
		return false
	}
	port := after[1:]
	if port == "" || len(port) > 5 || !allDigits(port) || port[0] == '0' && len(port) > 1 ||
		len(port) == 5 && port > "65535" || port == defaultPorts[o.scheme] {
		return false
	}
	o.port = port
	return true
}

// Classes of the bytes of a request origin's host.
const (
	hostInvalid = iota
	hostLabelChar
	hostDot
	hostColon
)

// hostChars classifies the bytes a canonical http(s) origin's host may
// hold: lower-case letters, digits, hyphens and underscores (browsers
// allow them), dots, and the colon before the port.
var hostChars = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = hostLabelChar
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = hostLabelChar
	}
	t['-'], t['_'], t['.'], t[':'] = hostLabelChar, hostLabelChar, hostDot, hostColon
	return t
}()

// parseOther accepts, as well formed but never trusted, origins of
// other schemes that some browsers send (chrome-extension://id).
func (o *reqOrigin) parseOther(s string) bool {
	o.scheme = -1
	sep := strings.Index(s, "://")
	if sep <= 0 || sep+3 == len(s) {
		return false
	}
	for i := range sep {
		c := s[i]
		letter := 'a' <= c && c <= 'z'
		other := '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
		if !letter && (i == 0 || !other) {
			return false
		}
	}
	for i := sep + 3; i < len(s); i++ {
		// The host of another scheme is opaque: its case is kept.
		if c := s[i]; hostChars[c] == hostInvalid && c != '[' && c != ']' && (c < 'A' || c > 'Z') {
			return false
		}
	}
	o.hostport = s[sep+3:]
	return true
}

// isCanonicalIPv4 reports whether s is four dot-separated decimal numbers
// 0..255 without leading zeros.
func isCanonicalIPv4(s string) bool {
	for part := range 4 {
		i := 0
		for i < len(s) && i < 4 && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		num := s[:i]
		if i == 0 || i > 3 || num[0] == '0' && i > 1 || i == 3 && num > "255" {
			return false
		}
		s = s[i:]
		if part < 3 {
			if s == "" || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
	}
	return s == ""
}

// secureHost reports whether a pattern's host is potentially trustworthy
// even over http: localhost, *.localhost, or a loopback IP.
func secureHost(p pattern) bool {
	if p.scheme == schemeHTTPS {
		return true
	}
	if p.ip {
		a, err := netip.ParseAddr(strings.Trim(p.host, "[]"))
		return err == nil && a.Unmap().IsLoopback()
	}
	return p.host == "localhost" || strings.HasSuffix(p.host, ".localhost")
}
