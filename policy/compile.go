package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

// Policy is a compiled, immutable policy. It is safe for concurrent use; a
// nil *Policy is valid and decides ReasonNoPolicy for every request.
type Policy struct {
	// Fields read by every Check come first, to share cache lines.

	// exact holds exact rules by canonical origin; the value is whether the
	// origin gets credentials, accounting for the wildcard rules that also
	// match it, so that a hit decides without further lookups.
	exact    map[string]bool
	name     string
	revision int64
	mode     Mode
	// any: the "*" rule is listed.
	any bool
	// anyToEveryone: the policy answers "Access-Control-Allow-Origin: *" to
	// every origin it allows, so responses never vary on Origin.
	anyToEveryone         bool
	crossOriginProtection bool
	// null: the "null" rule is listed.
	null              bool
	exposeHeader      string // with "*" when listed
	exposeCredsHeader string // without "*"

	// subdomains[scheme] holds subdomain wildcards by "suffix[:port]"
	// ("example.com" for https://*.example.com); the value is whether the
	// rule allows credentials. suffixLabels[scheme] has bit k set when some
	// suffix has k labels, so a lookup only tries suffixes that can match.
	subdomains [numSchemes]map[string]bool
	// subdomainsAnyPort[scheme] holds the subdomain wildcards that match
	// any port ("https://*.example.com:*") by suffix, without port.
	subdomainsAnyPort [numSchemes]map[string]bool
	suffixLabels      [numSchemes][2]uint64
	maxSuffixLabels   [numSchemes]int
	// minSuffixLabels[scheme] is the fewest labels of any suffix; more than
	// any host can have when there is none.
	minSuffixLabels [numSchemes]int
	// anyPort[scheme] holds port wildcards by host.
	anyPort [numSchemes]map[string]bool

	methodList    []string // listed methods but "*"; at most MaxMethods
	methodsAny    bool
	methodsHeader string // joined listed methods; "" when none

	requestHeaders       map[string]struct{} // lower case
	requestHeadersAny    bool
	requestHeadersHeader string // joined listed names; "" when none
	maxHeaderLen         int    // longest listed name
	// requestHeaderList holds the listed names, lower case, when there are
	// at most smallHeaderList of them (nil otherwise): scanning so few
	// beats a map lookup.
	requestHeaderList []string
	// requestHeadersCanon is the listed names lower-cased, sorted and
	// joined with ",", which is what browsers send when a script uses them
	// all; "" when that would exceed the request limits. It is allowed as a
	// whole, and lists "authorization" when requestHeadersCanonAuth.
	requestHeadersCanon     string
	requestHeadersCanonAuth bool

	// refusalBody is the body of answers to requests that cross-origin
	// protection refuses: built once, so that refusing allocates nothing.
	refusalBody string

	maxAge              string // "" when unset
	allowPrivateNetwork bool
	successStatus       int
	failureStatus       int

	hosts []string
	cfg   Config // normalized, owned copy
}

// Compile validates c as a whole and compiles it into an immutable Policy.
// On failure it returns every problem at once, as errors.Join of
// *FieldError (see FieldErrors), and a nil Policy. Compile never widens
// what c allows: it refuses what it cannot honour rather than adjusting it.
// c is not retained; Config returns its normalized copy.
func Compile(c Config) (*Policy, error) {
	var errs errorList
	p := &Policy{
		name:                  c.Name,
		revision:              c.Revision,
		mode:                  c.Mode,
		allowPrivateNetwork:   c.AllowPrivateNetwork,
		crossOriginProtection: c.CrossOriginProtection,
		exact:                 make(map[string]bool),
		requestHeaders:        make(map[string]struct{}),
		minSuffixLabels:       [numSchemes]int{math.MaxInt, math.MaxInt},
	}
	p.cfg = c
	p.cfg.Origins = compileOrigins(p, c.Origins, &errs)
	p.cfg.AllowedMethods = compileMethods(p, c.AllowedMethods, &errs)
	p.cfg.AllowedRequestHeaders = compileRequestHeaders(p, c.AllowedRequestHeaders, &errs)
	p.cfg.ExposedResponseHeaders = compileExposedHeaders(p, c.ExposedResponseHeaders, &errs)
	if c.MaxAgeSet {
		switch d := c.MaxAge; {
		case d < 0 || d > MaxMaxAge*time.Second:
			errs.add("max_age", d.String(), problemf("set max_age between 0s and 86400s; browsers cap it anyway (Chromium at 7200s)",
				"max_age must be between 0 and %d seconds", MaxMaxAge))
		case d%time.Second != 0:
			errs.add("max_age", d.String(), problemf(fmt.Sprintf("round it to whole seconds, such as %s", d.Truncate(time.Second)),
				"max_age must be a whole number of seconds"))
		default:
			p.maxAge = strconv.FormatInt(int64(d/time.Second), 10)
		}
	}
	p.cfg.Hosts = compileHosts(p, c.Hosts, &errs)
	// Keep nil lists nil, so that Config round-trips.
	for _, l := range []struct{ in, out *[]string }{
		{&c.AllowedMethods, &p.cfg.AllowedMethods},
		{&c.AllowedRequestHeaders, &p.cfg.AllowedRequestHeaders},
		{&c.ExposedResponseHeaders, &p.cfg.ExposedResponseHeaders},
		{&c.Hosts, &p.cfg.Hosts},
	} {
		if *l.in == nil {
			*l.out = nil
		}
	}
	if c.Origins == nil {
		p.cfg.Origins = nil
	}
	if c.Mode > ModeDisabled {
		errs.add("mode", c.Mode.String(), problemf("use ENFORCE, REPORT_ONLY or DISABLED", "unknown mode"))
	}
	switch c.PreflightSuccessStatus {
	case 0:
		p.successStatus = 204
	case 200, 204:
		p.successStatus = c.PreflightSuccessStatus
	default:
		errs.add("preflight_success_status", strconv.Itoa(c.PreflightSuccessStatus),
			problemf("use 204 (the default) or 200", "a successful preflight status must be 200 or 204"))
	}
	switch s := c.PreflightFailureStatus; {
	case s == 0:
		p.failureStatus = 403
	case s >= 400 && s <= 499:
		p.failureStatus = s
	default:
		errs.add("preflight_failure_status", strconv.Itoa(s),
			problemf("use 403 (the default) or another 4xx status", "a refused preflight status must be between 400 and 499"))
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	p.foldExactCredentials()
	name := c.Name
	if name == "" {
		name = "the policy"
	}
	p.refusalBody = "cross-origin request refused by " + name + ": the origin is not trusted\n"
	return p, nil
}

func compileOrigins(p *Policy, rules []Origin, errs *errorList) []Origin {
	if len(rules) > MaxOrigins {
		errs.add("origins", strconv.Itoa(len(rules)), problemf(
			"split the API into several policies, or cover related origins with a subdomain wildcard",
			"a policy may have at most %d origin rules", MaxOrigins))
		rules = rules[:MaxOrigins]
	}
	out := make([]Origin, len(rules))
	seen := make(map[string]int, len(rules))
	anyCreds := false
	for i, o := range rules {
		out[i] = o
		field := fmt.Sprintf("origins[%d]", i)
		if len(o.Description) > MaxDescriptionLength {
			errs.add(field+".description", o.Description, problemf("shorten the description",
				"description is %d bytes long; the limit is %d", len(o.Description), MaxDescriptionLength))
		}
		pt, prob := parsePattern(o.Pattern)
		if prob != nil {
			errs.add(field+".pattern", o.Pattern, prob)
			continue
		}
		out[i].Pattern = pt.canon
		if j, dup := seen[pt.canon]; dup {
			errs.add(field+".pattern", o.Pattern, problemf("remove one of the two rules",
				"duplicates origins[%d] (both are %q once normalized)", j, pt.canon))
			continue
		}
		seen[pt.canon] = i
		if prob := publicSuffixProblem(pt, o); prob != nil {
			errs.add(field+".pattern", o.Pattern, prob)
			continue
		}
		if o.AllowCredentials {
			if prob := credentialsProblem(pt, o); prob != nil {
				errs.add(field+".allow_credentials", "true", prob)
				continue
			}
			anyCreds = true
		}
		switch pt.kind {
		case patternAny:
			p.any = true
		case patternNull:
			p.null = true
		case patternExact:
			p.exact[pt.canon] = o.AllowCredentials
		case patternSubdomains:
			key := pt.host
			if pt.port != "" {
				key += ":" + pt.port
			}
			idx := &p.subdomains[pt.scheme]
			if pt.anyPortToo {
				idx, key = &p.subdomainsAnyPort[pt.scheme], pt.host
			}
			if *idx == nil {
				*idx = make(map[string]bool)
			}
			(*idx)[key] = o.AllowCredentials
			n := strings.Count(pt.host, ".") + 1 // at most 127: hosts are at most 253 bytes
			p.suffixLabels[pt.scheme][n/64] |= 1 << (n % 64)
			p.maxSuffixLabels[pt.scheme] = max(p.maxSuffixLabels[pt.scheme], n)
			p.minSuffixLabels[pt.scheme] = min(p.minSuffixLabels[pt.scheme], n)
		case patternAnyPort:
			if p.anyPort[pt.scheme] == nil {
				p.anyPort[pt.scheme] = make(map[string]bool)
			}
			p.anyPort[pt.scheme][pt.host] = o.AllowCredentials
		}
	}
	p.anyToEveryone = p.any && !anyCreds && !p.null
	return out
}

// publicSuffixProblem refuses a subdomain wildcard directly under a public
// suffix (https://*.co.uk, https://*.github.io), with or without
// credentials, unless the rule says the operator means it: anyone can
// register a name there, so no one means to trust them all.
func publicSuffixProblem(pt pattern, o Origin) *problem {
	if pt.kind != patternSubdomains || o.DangerouslyAllowWildcardUnderPublicSuffix || o.DangerouslyAllowCredentialsUnderPublicSuffix || pt.host == "localhost" {
		return nil
	}
	if ps, _ := publicsuffix.PublicSuffix(pt.host); ps == pt.host {
		return problemf(`list the trusted origins exactly, or set dangerously_allow_wildcard_under_public_suffix if you accept the risk`,
			"every subdomain of the public suffix %q: anyone can register one", pt.host)
	}
	return nil
}

// credentialsProblem says why a rule may not allow credentials, or nil.
func credentialsProblem(pt pattern, o Origin) *problem {
	switch pt.kind {
	case patternAny:
		return problemf(`list the trusted origins explicitly with allow_credentials, or set allow_credentials to false`,
			`"*" never allows credentials: browsers refuse "Access-Control-Allow-Origin: *" with credentials, and any site could read the responses`)
	case patternNull:
		return problemf("set allow_credentials to false",
			`"null" never allows credentials: sandboxed documents, file: URLs and redirects all send it, so anyone can`)
	}
	if pt.scheme == schemeOther {
		// An extension's origin names that one extension; an app shell's
		// (capacitor://localhost) is the same for every app built on it.
		if pt.host == "localhost" && !o.DangerouslyAllowInsecureCredentials {
			return problemf(`set dangerously_allow_insecure_credentials if you accept the risk`,
				"credentials for %s: every app built on that shell sends this same origin", pt.canon)
		}
		return nil
	}
	if !o.DangerouslyAllowInsecureCredentials && !secureHost(pt) {
		return problemf(`use an https origin, or set dangerously_allow_insecure_credentials if you accept the risk`,
			"credentials for an http origin that is neither localhost nor a loopback address: a network attacker can impersonate it")
	}
	if pt.kind == patternSubdomains && !o.DangerouslyAllowCredentialsUnderPublicSuffix && pt.host != "localhost" {
		if ps, _ := publicsuffix.PublicSuffix(pt.host); ps == pt.host {
			return problemf(`list the trusted origins exactly, or set dangerously_allow_credentials_under_public_suffix if you accept the risk`,
				"credentials for every subdomain of the public suffix %q: anyone can register one", pt.host)
		}
	}
	return nil
}

func compileMethods(p *Policy, methods []string, errs *errorList) []string {
	if len(methods) > MaxMethods {
		errs.add("allowed_methods", strconv.Itoa(len(methods)), problemf("list fewer methods, or use \"*\"",
			"at most %d methods may be listed", MaxMethods))
		methods = methods[:MaxMethods]
	}
	out := make([]string, 0, len(methods))
	seen := make(map[string]int, len(methods))
	for i, m := range methods {
		field := fmt.Sprintf("allowed_methods[%d]", i)
		switch {
		case m == "":
			errs.add(field, m, problemf("remove the empty entry", "method is empty"))
			continue
		case len(m) > MaxNameLength:
			errs.add(field, m, problemf("shorten the method", "method is longer than %d bytes", MaxNameLength))
			continue
		case !isToken(m):
			errs.add(field, m, problemf("write the method as an HTTP token, such as PATCH",
				"method is not a valid HTTP token"))
			continue
		case isForbiddenMethod(m):
			errs.add(field, m, problemf("remove it", "%s is forbidden by the Fetch standard: browsers never send it", strings.ToUpper(m)))
			continue
		}
		n := normalizeMethod(m)
		if j, dup := seen[n]; dup {
			errs.add(field, m, problemf("remove one of the two entries", "duplicates allowed_methods[%d]", j))
			continue
		}
		seen[n] = i
		out = append(out, n)
		if n == "*" {
			p.methodsAny = true
		} else {
			p.methodList = append(p.methodList, n)
		}
	}
	p.methodsHeader = strings.Join(out, ", ")
	return out
}

func compileRequestHeaders(p *Policy, names []string, errs *errorList) []string {
	out := validHeaderNames("allowed_request_headers", "request", names, errs, func(h, lower string) *problem {
		if isResponseOnlyHeader(lower) {
			return problemf("remove it: corsd or the application sets it on responses; list the headers scripts send, such as Content-Type",
				"%s is a response-only header: browsers never send it in a request", h)
		}
		if isForbiddenRequestHeader(lower) {
			return problemf("remove it", "%s is a forbidden request header: browsers set it themselves and scripts cannot", h)
		}
		return nil
	})
	for _, h := range out {
		if h == "*" {
			p.requestHeadersAny = true
			continue
		}
		lower := strings.ToLower(h)
		p.requestHeaders[lower] = struct{}{}
		p.maxHeaderLen = max(p.maxHeaderLen, len(lower))
	}
	p.requestHeadersHeader = strings.Join(out, ", ")
	lower := make([]string, 0, len(p.requestHeaders))
	for h := range p.requestHeaders {
		lower = append(lower, h)
	}
	slices.Sort(lower)
	if len(lower) <= smallHeaderList {
		p.requestHeaderList = lower
	}
	if canon := strings.Join(lower, ","); len(lower) <= MaxRequestHeaders && len(canon) <= MaxRequestHeadersBytes {
		p.requestHeadersCanon = canon
		_, p.requestHeadersCanonAuth = p.requestHeaders["authorization"]
	}
	return out
}

// smallHeaderList is the most request header names that are scanned
// rather than looked up in a map.
const smallHeaderList = 16

func compileExposedHeaders(p *Policy, names []string, errs *errorList) []string {
	out := validHeaderNames("exposed_response_headers", "response", names, errs, func(h, lower string) *problem {
		if lower == "set-cookie" || lower == "set-cookie2" {
			return problemf("remove it; if scripts need the value, send it in another header",
				"browsers never expose %s to scripts", h)
		}
		if isRequestOnlyHeader(lower) {
			return problemf("remove it; list the response headers scripts should read, such as X-Request-Id",
				"%s is a request-only header: responses never carry it, so exposing it does nothing", h)
		}
		return nil
	})
	p.exposeHeader = strings.Join(out, ", ")
	p.exposeCredsHeader = strings.Join(slices.DeleteFunc(slices.Clone(out), func(h string) bool { return h == "*" }), ", ")
	return out
}

// validHeaderNames returns the valid entries of the header list at
// listField, in order, and records a problem for each entry that is
// malformed, refused by extra, or a case-insensitive duplicate.
func validHeaderNames(listField, kind string, names []string, errs *errorList, extra func(h, lower string) *problem) []string {
	if len(names) > MaxHeaderNames {
		errs.add(listField, strconv.Itoa(len(names)), problemf("list fewer headers, or use \"*\"",
			"at most %d %s headers may be listed", MaxHeaderNames, kind))
		names = names[:MaxHeaderNames]
	}
	out := make([]string, 0, len(names))
	seen := make(map[string]int, len(names))
	for i, h := range names {
		field := fmt.Sprintf("%s[%d]", listField, i)
		if prob := headerNameProblem(h); prob != nil {
			errs.add(field, h, prob)
			continue
		}
		lower := strings.ToLower(h)
		if prob := extra(h, lower); prob != nil {
			errs.add(field, h, prob)
			continue
		}
		if j, dup := seen[lower]; dup {
			errs.add(field, h, problemf("remove one of the two entries", "duplicates %s[%d] (header names are case-insensitive)", listField, j))
			continue
		}
		seen[lower] = i
		out = append(out, h)
	}
	return out
}

// headerNameProblem checks the syntax of a configured header name.
func headerNameProblem(h string) *problem {
	switch {
	case h == "":
		return problemf("remove the empty entry", "header name is empty")
	case len(h) > MaxNameLength:
		return problemf("shorten the header name", "header name is longer than %d bytes", MaxNameLength)
	case !isToken(h):
		return problemf("write the name alone, such as X-Request-Id, one name per entry",
			"header name is not a valid HTTP token")
	}
	return nil
}

func compileHosts(p *Policy, hosts []string, errs *errorList) []string {
	if len(hosts) > MaxHosts {
		errs.add("hosts", strconv.Itoa(len(hosts)), problemf("use a wildcard such as *.api.example.com",
			"at most %d hosts may be listed", MaxHosts))
		hosts = hosts[:MaxHosts]
	}
	out := make([]string, 0, len(hosts))
	seen := make(map[string]int, len(hosts))
	for i, h := range hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		n, prob := normalizeHostEntry(h)
		if prob != nil {
			errs.add(field, h, prob)
			continue
		}
		if j, dup := seen[n]; dup {
			errs.add(field, h, problemf("remove one of the two entries", "duplicates hosts[%d] (both are %q once normalized)", j, n))
			continue
		}
		seen[n] = i
		out = append(out, n)
	}
	p.hosts = out
	return out
}

// foldExactCredentials lets an exact entry carry credentials when any
// wildcard rule matching its origin allows them, so that Check decides on
// an exact hit alone.
func (p *Policy) foldExactCredentials() {
	for key, creds := range p.exact {
		if creds {
			continue
		}
		o, ok := parseRequestOrigin(key)
		if !ok || o.scheme < 0 {
			continue // another scheme: no wildcard covers it
		}
		if m := p.matchWildcards(&o); m.found && m.creds {
			p.exact[key] = true
		}
	}
}

// Name returns the Config's Name. A nil Policy has none.
func (p *Policy) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// Revision returns the Config's Revision.
func (p *Policy) Revision() int64 {
	if p == nil {
		return 0
	}
	return p.revision
}

// Mode returns the Config's Mode.
func (p *Policy) Mode() Mode {
	if p == nil {
		return ModeEnforce
	}
	return p.mode
}

// Hosts returns the normalized hosts the policy governs, in Config order.
// The slice is a copy.
func (p *Policy) Hosts() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.hosts)
}

// Config returns a copy of the Config the policy was compiled from, with
// origin patterns, methods and hosts normalized (as NormalizeOrigin,
// NormalizeHost and the Fetch method normalization give them). Compiling it
// again gives an equivalent Policy.
func (p *Policy) Config() Config {
	if p == nil {
		return Config{}
	}
	c := p.cfg
	c.Origins = slices.Clone(c.Origins)
	c.AllowedMethods = slices.Clone(c.AllowedMethods)
	c.AllowedRequestHeaders = slices.Clone(c.AllowedRequestHeaders)
	c.ExposedResponseHeaders = slices.Clone(c.ExposedResponseHeaders)
	c.Hosts = slices.Clone(c.Hosts)
	return c
}
