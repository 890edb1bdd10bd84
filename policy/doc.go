// Package policy is corsd's decision engine: it validates a CORS policy,
// compiles it, and decides requests the way the Fetch standard expects. It
// does no I/O and imports nothing else of corsd.
//
// A Config is validated as a whole by Compile, which reports every problem
// at once (errors.Join of *FieldError, named by proto field paths) and
// never widens what the Config allows. The resulting *Policy is immutable
// and safe for concurrent use; (*Policy).Check decides one Request without
// allocating and returns a Decision: its kind, whether it is allowed, the
// status an enforcement point must answer with (preflights and requests
// refused by cross-origin protection), a machine-readable Reason and the
// exact response headers to emit.
//
// # Origins
//
// Rule patterns are normalized when compiled (see NormalizeOrigin). A
// request's Origin matches only in the serialization browsers send: lower
// case, no path, no default port, one origin. Anything else is
// ReasonOriginMalformed and matches nothing, not even "*". Exact rules are
// found with one map lookup; subdomain wildcards ("https://*.example.com",
// never the apex) with one lookup per label of the request host that some
// rule can match; port wildcards ("http://localhost:*") with one lookup.
// When several rules match an origin, it gets credentials if any of them
// allows credentials. "*" matches any origin except "null", never with
// credentials; "null" matches only when listed.
//
// # Responses
//
// Allowed preflights get Access-Control-Allow-Origin (the origin, or "*"
// when the "*" rule allows it and no matching rule allows credentials),
// Access-Control-Allow-Credentials, -Allow-Methods, -Allow-Headers,
// -Max-Age and -Allow-Private-Network as configured and asked; "*" in the
// method and header lists is answered literally only without credentials
// (otherwise the request's method and headers are echoed once validated),
// and never covers Authorization. Refused preflights get only Vary. Actual
// requests from allowed origins get Access-Control-Allow-Origin,
// -Allow-Credentials and -Expose-Headers; refused ones get no CORS header.
// Every response whose headers depend on the Origin carries Vary: Origin,
// including responses to requests without an Origin and to refused
// origins, except in a policy that answers "*" to every origin it allows
// (a "*" rule, no credentials, no "null" rule).
//
// # Cross-origin protection
//
// With Config.CrossOriginProtection, requests with a method other than
// GET, HEAD and OPTIONS that a browser marks cross-origin (Sec-Fetch-Site
// other than same-origin and none; without it, an Origin whose host and
// port differ from Request.Host) are refused with 403 unless a rule of the
// policy trusts their origin. The "*" rule does not count as trust: it
// would switch the protection off for every site.
package policy
