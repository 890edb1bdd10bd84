package policy

import "time"

// Mode says what a policy's decisions do. The zero value is ModeEnforce.
type Mode uint8

const (
	// ModeEnforce makes decisions change responses.
	ModeEnforce Mode = iota
	// ModeReportOnly makes decisions that enforcement points log and count
	// but never apply.
	ModeReportOnly
	// ModeDisabled makes no decision: every request is KindNotCORS with
	// ReasonPolicyDisabled and no headers.
	ModeDisabled
)

// Config is the uncompiled, user-supplied form of a policy. Field names in
// FieldError.Field use the snake_case names of the matching proto fields
// (`origins[2].pattern`, `max_age`), so callers can report them verbatim.
type Config struct {
	// Name identifies the policy in decisions and messages ("policies/acme").
	// It is metadata: Compile does not validate it.
	Name string
	// Revision is metadata copied into every Decision.
	Revision int64

	Origins                []Origin
	AllowedMethods         []string
	AllowedRequestHeaders  []string
	ExposedResponseHeaders []string
	// MaxAge is emitted as Access-Control-Max-Age when MaxAgeSet is true.
	MaxAge              time.Duration
	MaxAgeSet           bool
	AllowPrivateNetwork bool
	// Hosts are request hosts the policy governs ("api.example.com",
	// "*.api.example.com"); validated and normalized, used by selectors.
	Hosts                 []string
	Mode                  Mode
	CrossOriginProtection bool
	// PreflightSuccessStatus is 200 or 204; 0 means 204.
	PreflightSuccessStatus int
	// PreflightFailureStatus is 400..499; 0 means 403.
	PreflightFailureStatus int
}

// Origin is one trusted origin rule.
type Origin struct {
	Pattern          string
	AllowCredentials bool
	Description      string
	// DangerouslyAllowCredentialsUnderPublicSuffix permits credentials for a
	// wildcard directly under a public suffix (https://*.github.io).
	DangerouslyAllowCredentialsUnderPublicSuffix bool
	// DangerouslyAllowInsecureCredentials permits credentials for an origin
	// that is neither https, loopback nor localhost.
	DangerouslyAllowInsecureCredentials bool
	// DangerouslyAllowWildcardUnderPublicSuffix permits a subdomain
	// wildcard directly under a public suffix (http://*.com), with or
	// without credentials. DangerouslyAllowCredentialsUnderPublicSuffix
	// implies it.
	DangerouslyAllowWildcardUnderPublicSuffix bool
}

// Request is what a decision needs of one HTTP request. Header fields hold
// the raw value (several field lines already joined with ", "); empty means
// absent.
type Request struct {
	Method                             string
	Host                               string // request host, with or without port
	Origin                             string
	AccessControlRequestMethod         string
	AccessControlRequestHeaders        string
	AccessControlRequestPrivateNetwork string
	SecFetchSite                       string
}

// Kind classifies a request.
type Kind uint8

const (
	KindUnspecified Kind = iota
	KindPreflight
	KindActual
	KindNotCORS
)

// Reason is the machine-readable cause of a decision. The numeric values
// match the corsd.v1.Reason proto enum.
type Reason uint8

const (
	ReasonUnspecified Reason = iota
	ReasonAllowed
	ReasonNoOrigin
	ReasonOriginNotAllowed
	ReasonOriginMalformed
	ReasonMethodNotAllowed
	ReasonHeaderNotAllowed
	ReasonHeadersMalformed
	ReasonPrivateNetworkNotAllowed
	ReasonCrossOriginRefused
	ReasonPolicyDisabled
	ReasonNoPolicy
	ReasonMethodMalformed
)

// Header is one response header to emit. Name is in canonical MIME form.
// Append is true only for Vary, which must be appended to, never replaced.
type Header struct {
	Name   string
	Value  string
	Append bool
}

// MaxHeaders bounds the number of headers a Decision carries.
const MaxHeaders = 8

// Decision is the answer to one request. It is a value: Check allocates
// nothing to build it, and its header values are strings that the compiled
// policy or the request already hold.
type Decision struct {
	Kind Kind
	// Allowed: for a preflight, it succeeds; for an actual request, its origin
	// may read the response and cross-origin protection did not refuse it.
	Allowed bool
	// Status is non-zero when the enforcement point must answer the request
	// itself (preflights; requests refused by cross-origin protection).
	Status int
	Reason Reason
	// Policy and Revision come from the Config the policy was compiled from.
	Policy   string
	Revision int64
	Mode     Mode
	// Origin is the request's Origin as received (for messages and logs).
	Origin string
	// Detail names what was refused (the method or header), for Message.
	Detail string
	// Body is the body of the answer when the enforcement point answers
	// (Status non-zero); empty for preflights. Headers then carry its
	// Content-Type.
	Body string

	headers [MaxHeaders]Header
	n       uint8
}

// A Decision is also the complete plan of the response, which every
// enforcement point (ext_authz, CheckOrigin's caller, the SDK middleware)
// renders without deciding anything itself:
//
//   - when Applies is false (report-only), nothing is changed: the request
//     goes on untouched;
//   - when Answers is true, the enforcement point answers the request
//     itself with Status, Headers and Body; the protected handler is not
//     called;
//   - otherwise the request goes on, and Headers are added to its response.
//
// Headers with Append set (Vary) are appended to what the response already
// has; every other header replaces any value of the same name.

// Applies reports whether the enforcement point must apply the decision:
// false in report-only mode, where it is only logged and counted.
func (d *Decision) Applies() bool { return d.Mode != ModeReportOnly }

// Answers reports whether the enforcement point answers the request
// itself (a preflight, or a request cross-origin protection refuses)
// rather than passing it on.
func (d *Decision) Answers() bool { return d.Applies() && d.Status != 0 }

// Reportable is the one rule for which decisions are counted and sent as
// reports (client.Reporter, ReportDecisions): decisions of a policy about a
// CORS request, and those of cross-origin protection. Decisions without a
// policy and on requests that are not CORS requests are not.
func (d *Decision) Reportable() bool {
	return d.Policy != "" && (d.Kind != KindNotCORS || d.Reason == ReasonCrossOriginRefused)
}

// Notable is the one rule for which decisions are logged even when
// decision logging is off: reportable refusals that were not applied
// (report-only), which is what report-only mode exists to show.
func (d *Decision) Notable(applied bool) bool {
	return !applied && !d.Allowed && d.Reportable()
}

// Headers returns the response headers to emit, in order. The slice aliases
// d; copy values before handing them to an http.Header.
func (d *Decision) Headers() []Header { return d.headers[:d.n] }
