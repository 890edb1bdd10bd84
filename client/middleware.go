package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/corsd/corsd/policy"
)

// PolicySource gives the middleware its policies. *Watcher implements it;
// StaticSource wraps a fixed policy. Implementations must be safe for
// concurrent use and fast: they are called on every request.
type PolicySource interface {
	// Ready reports whether the source has a snapshot to decide from.
	Ready() bool
	// Policy returns the named policy, or nil (which decides "no policy").
	Policy(name string) *policy.Policy
}

var _ PolicySource = (*Watcher)(nil)

// StaticSource returns a PolicySource that is always ready and returns p
// whatever name is asked. It suits tests, benchmarks and services that
// compile their policy themselves (policy.Compile).
func StaticSource(p *policy.Policy) PolicySource { return staticSource{p} }

type staticSource struct{ p *policy.Policy }

func (staticSource) Ready() bool                    { return true }
func (s staticSource) Policy(string) *policy.Policy { return s.p }

// Option configures Middleware.
type Option func(*middleware)

// WithReportOnly makes the middleware change no response, whatever the
// policy's mode: it decides and calls the hooks only. Use it to try a
// policy on live traffic.
func WithReportOnly() Option {
	return func(m *middleware) { m.reportOnly = true }
}

// WithPassThroughUntilReady changes what happens before the source's first
// snapshot: every request, preflights included, goes to the next handler
// untouched. The default fails closed: no CORS headers are added (only
// `Vary: Origin`), preflights are refused with 503 Service Unavailable and
// other requests go on without CORS headers.
func WithPassThroughUntilReady() Option {
	return func(m *middleware) { m.passThrough = true }
}

// WithDecisionHook calls hook with every decision, in every mode, for
// logging and metrics, before the response is changed. d is valid only
// during the call: copy *d to keep it. Before the source's first snapshot,
// the hook receives a decision with Reason policy.ReasonNoPolicy and, for a
// refused preflight, Status 503. hook must be safe for concurrent use.
func WithDecisionHook(hook func(r *http.Request, d *policy.Decision)) Option {
	return func(m *middleware) { m.hook = hook }
}

// WithReporter hands every decision to rep, which counts the ones it
// reports (by default those not applied) and sends them to corsd.
func WithReporter(rep *Reporter) Option {
	return func(m *middleware) { m.reporter = rep }
}

// Middleware returns net/http middleware that enforces the policy named
// policyName (`policies/{id}`) as src has it, deciding locally, with no
// network call:
//
//   - a preflight is answered by the middleware with the decision's status
//     (204 by default, 403 when refused) and headers; next is not called;
//   - a request that cross-origin protection refuses gets 403 with the
//     decision's headers; next is not called;
//   - any other request gets the decision's headers on w.Header(), then
//     next is called. `Vary` is appended to, the other headers replace any
//     value already set. Every response gets its own value slices, so code
//     that edits them cannot affect other responses.
//
// In report-only mode (the policy's mode, or WithReportOnly), nothing is
// changed: the hook and the reporter (WithReporter) get the decision, and
// the request goes on. A policy that is unknown to src decides "no
// policy": the request goes on untouched.
//
// Middleware cannot report a misspelt name: prefer NewMiddleware, which
// returns an error for it. When src is a *Watcher, Middleware still makes
// the name known to it, so that the Watcher logs a warning when its
// snapshot lacks the name, and when the policy disappears (see Watcher).
func Middleware(policyName string, src PolicySource, opts ...Option) func(http.Handler) http.Handler {
	if w, ok := src.(*Watcher); ok {
		w.expect(policyName)
	}
	return newMiddleware(policyName, src, opts)
}

// ErrUnknownPolicy is returned, wrapped, by NewMiddleware for a policy name
// that its source does not have.
var ErrUnknownPolicy = errors.New("client: unknown policy")

// NewMiddleware is Middleware with the name checked at construction, so
// that an explicit policy name never silently decides "no policy". It
// returns an error when policyName is not of the form `policies/{id}`,
// and one wrapping ErrUnknownPolicy when:
//
//   - src is a *Watcher that does not watch policyName (it was built for
//     other names, so its snapshot can never hold it);
//   - src is ready (a snapshot from corsd or the cache file) and does not
//     have the policy.
//
// When src is not ready yet, NewMiddleware cannot tell, and succeeds: the
// middleware fails closed until the first snapshot (see
// WithPassThroughUntilReady), and a *Watcher logs a warning, once, if that
// snapshot lacks the policy. A policy deleted later is logged by the
// Watcher too; the middleware then decides "no policy" (see Middleware).
//
// It is a separate constructor, rather than a new signature for Middleware,
// so that existing callers keep compiling.
func NewMiddleware(policyName string, src PolicySource, opts ...Option) (func(http.Handler) http.Handler, error) {
	if err := checkName(policyName); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("client: NewMiddleware needs a PolicySource")
	}
	if w, ok := src.(*Watcher); ok {
		if !w.wanted(policyName) {
			return nil, fmt.Errorf("%w: %q is not among the names the Watcher watches %q", ErrUnknownPolicy, policyName, w.names)
		}
		if s := w.snap.Load(); s != nil && s.policies[policyName] == nil {
			return nil, fmt.Errorf("%w: %q is not in the snapshot at revision %d", ErrUnknownPolicy, policyName, s.revision)
		}
		w.expect(policyName)
	} else if src.Ready() && src.Policy(policyName) == nil {
		return nil, fmt.Errorf("%w: %q is not in the source's snapshot", ErrUnknownPolicy, policyName)
	}
	return newMiddleware(policyName, src, opts), nil
}

func newMiddleware(policyName string, src PolicySource, opts []Option) func(http.Handler) http.Handler {
	m := &middleware{name: policyName, src: src}
	for _, o := range opts {
		o(m)
	}
	return func(next http.Handler) http.Handler {
		return &handler{m: m, next: next}
	}
}

type middleware struct {
	name        string
	src         PolicySource
	reportOnly  bool
	passThrough bool
	hook        func(*http.Request, *policy.Decision)
	reporter    *Reporter
}

type handler struct {
	m    *middleware
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	var req policy.Request
	requestOf(r, &req)
	var d policy.Decision
	if m.src.Ready() {
		d = m.src.Policy(m.name).Check(req)
	} else {
		if m.passThrough {
			// Told to stay out of the way until policies arrive.
			d = policy.Decision{Kind: policy.KindNotCORS, Reason: policy.ReasonNoPolicy, Origin: req.Origin}
			if m.hook != nil {
				m.callHook(r, &d)
			}
			h.next.ServeHTTP(w, r)
			return
		}
		d = policy.CheckUnavailable(req)
	}
	if m.hook != nil {
		m.callHook(r, &d)
	}
	applied := !m.reportOnly && d.Applies()
	if m.reporter != nil {
		m.reporter.record(&d, !applied)
	}
	if applied {
		// Render the decision's plan; decide nothing here.
		setHeaders(w.Header(), d.Headers())
		if d.Answers() {
			w.WriteHeader(d.Status)
			if d.Body != "" {
				_, _ = io.WriteString(w, d.Body)
			}
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

var decisionPool = sync.Pool{New: func() any { return new(policy.Decision) }}

// callHook hands the hook a pooled copy of *d, so that the caller's
// Decision stays on its stack (d does not escape), copied once.
func (m *middleware) callHook(r *http.Request, d *policy.Decision) {
	p := decisionPool.Get().(*policy.Decision)
	*p = *d
	m.hook(r, p)
	*p = policy.Decision{}
	decisionPool.Put(p)
}

// requestOf extracts what a decision needs from r. Header maps are indexed
// with canonical keys directly: net/http canonicalizes incoming names.
// Headers that cannot change the decision are not read: preflight headers
// outside OPTIONS requests with an Origin, Sec-Fetch-Site for the methods
// that cross-origin protection ignores (methods are case-sensitive).
//
// It fills req, which must be zero, in place: returning the 112-byte
// struct would copy it once more on every request.
func requestOf(r *http.Request, req *policy.Request) {
	h := r.Header
	req.Method, req.Host = r.Method, r.Host
	req.Origin = headerValue(h["Origin"])
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		// Cross-origin protection ignores these methods: skip a lookup.
	default:
		req.SecFetchSite = headerValue(h["Sec-Fetch-Site"])
	}
	if req.Origin != "" && r.Method == http.MethodOptions {
		req.AccessControlRequestMethod = headerValue(h["Access-Control-Request-Method"])
		req.AccessControlRequestHeaders = headerValue(h["Access-Control-Request-Headers"])
		req.AccessControlRequestPrivateNetwork = headerValue(h["Access-Control-Request-Private-Network"])
	}
}

// headerValue returns a header's field lines as one value: the line itself
// when there is one (no allocation), else the lines joined with ", ", or
// policy.OverlongField when they would join into more than
// policy.MaxFieldLength bytes (measured first, so never built).
func headerValue(lines []string) string {
	switch len(lines) {
	case 0:
		return ""
	case 1:
		return lines[0]
	}
	n := 0
	for _, l := range lines {
		if n += len(l) + len(", "); n > policy.MaxFieldLength+len(", ") {
			return policy.OverlongField
		}
	}
	return strings.Join(lines, ", ")
}

// setHeaders writes hs into h. Every value gets its own one-element slice,
// with its capacity capped at one, so that an append by other code
// reallocates instead of writing next to it: no element is ever shared with
// another header or another response. The slices are carved from chunks
// (see valueSlab) rather than allocated one by one.
func setHeaders(h http.Header, hs []policy.Header) {
	if len(hs) == 0 {
		return
	}
	sl := slabs.Get().(*valueSlab)
	vals := sl.take(len(hs))
	slabs.Put(sl)
	for i, x := range hs {
		if x.Append && len(h[x.Name]) > 0 {
			appendValue(h, x.Name, x.Value)
			continue
		}
		vals[i] = x.Value
		h[x.Name] = vals[i : i+1 : i+1]
	}
}

// slabSize is the number of header values per chunk: 4 KiB of string
// headers, enough for about 60 responses.
const slabSize = 256

// valueSlab hands out fresh, never reused string slices from a chunk. A
// chunk is only shared in memory, never in content: each element goes to
// one response, once. The GC frees a chunk when no response holds any of
// its elements. This turns one allocation per response into one per
// chunk.
type valueSlab struct{ free []string }

var slabs = sync.Pool{New: func() any { return new(valueSlab) }}

func (s *valueSlab) take(n int) []string {
	if len(s.free) < n {
		s.free = make([]string, max(slabSize, n))
	}
	v := s.free[:n:n]
	s.free = s.free[n:]
	return v
}

// appendValue appends v to h[name] in a new slice: the existing one may be
// shared with code we do not know.
func appendValue(h http.Header, name, v string) {
	old := h[name]
	nv := make([]string, len(old)+1)
	copy(nv, old)
	nv[len(old)] = v
	h[name] = nv
}
