package browser

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corsd/corsd/policy"
)

// sessionCookie is the API's session cookie, set by /login.
const sessionCookie = "session"

// call is one request that reached the API handler, behind corsd's layer.
type call struct {
	API     string // "sdk" or "envoy"
	Method  string
	Path    string
	ID      string // the id query parameter, unique per request of the suite
	Origin  string
	Session string // the session cookie's value; empty when none was sent
}

// hit is one request as the API's server saw it before any CORS layer, and
// the status it got back: an access log.
type hit struct {
	API          string
	Method       string
	Path         string
	ID           string
	Origin       string
	SecFetchSite string
	Session      string
	Status       int
	Arrived      time.Time // when the request reached the server
}

// decision is a copy of a decision the SDK middleware reported to its hook.
type decision struct {
	Policy  string
	Method  string
	ID      string
	Origin  string
	Kind    policy.Kind
	Mode    policy.Mode
	Allowed bool
	Reason  policy.Reason
}

// journal records what the API servers saw. It is safe for concurrent use.
type journal struct {
	mu        sync.Mutex
	calls     []call
	hits      []hit
	decisions []decision
}

func (j *journal) addCall(c call) {
	j.mu.Lock()
	j.calls = append(j.calls, c)
	j.mu.Unlock()
}

func (j *journal) addHit(h hit) {
	j.mu.Lock()
	j.hits = append(j.hits, h)
	j.mu.Unlock()
}

// decisionHook is the SDK middleware's hook: it keeps a copy of every
// decision, for the report-only case.
func (j *journal) decisionHook(r *http.Request, d *policy.Decision) {
	j.mu.Lock()
	j.decisions = append(j.decisions, decision{
		Policy: d.Policy, Method: r.Method, ID: r.URL.Query().Get("id"), Origin: d.Origin,
		Kind: d.Kind, Mode: d.Mode, Allowed: d.Allowed, Reason: d.Reason,
	})
	j.mu.Unlock()
}

// callsOf returns the handler calls of the request with id.
func (j *journal) callsOf(id string) []call {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []call
	for _, c := range j.calls {
		if c.ID == id {
			out = append(out, c)
		}
	}
	return out
}

// countCalls counts the handler calls of api with method on path.
func (j *journal) countCalls(api, method, path string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range j.calls {
		if c.API == api && c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

// hitsOf returns the access log entries of the request with id.
func (j *journal) hitsOf(id string) []hit {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []hit
	for _, h := range j.hits {
		if h.ID == id {
			out = append(out, h)
		}
	}
	return out
}

// decisionsOf returns the SDK hook's decisions for the request with id.
func (j *journal) decisionsOf(id string) []decision {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(j.decisions), func(d decision) bool { return d.ID != id })
}

// accessLog wraps next (corsd's layer and the API) and records every request
// with the status it finally got.
func (j *journal) accessLog(api string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		j.addHit(hit{
			API: api, Method: r.Method, Path: r.URL.Path, ID: r.URL.Query().Get("id"),
			Origin: r.Header.Get("Origin"), SecFetchSite: r.Header.Get("Sec-Fetch-Site"),
			Session: sessionOf(r), Status: sw.status, Arrived: arrived,
		})
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func sessionOf(r *http.Request) string {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// apiHandler is the protected API. It knows nothing of corsd:
//   - /login sets the session cookie (SameSite=None; Secure, so that
//     cross-site requests can carry it);
//   - /p/{policy}/... records the call, exposes-or-not X-Request-Cost and
//     X-Internal-Trace, and answers with who the caller is;
//   - under /p/report/ it also applies its own CORS configuration, trusting
//     ownOrigin only: that is what rules while corsd's policy for that path
//     is report-only.
type apiHandler struct {
	name      string
	j         *journal
	ownOrigin string
}

// reply is the JSON body of /p/ responses.
type reply struct {
	API    string `json:"api"`
	Method string `json:"method"`
	ID     string `json:"id"`
	User   string `json:"user"`
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login":
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: "user-of-" + h.name, Path: "/",
			Secure: true, HttpOnly: true, SameSite: http.SameSiteNoneMode,
			Expires: time.Now().Add(time.Hour),
		})
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("logged in\n"))
		return
	case !strings.HasPrefix(r.URL.Path, "/p/"):
		http.NotFound(w, r)
		return
	}
	id := r.URL.Query().Get("id")
	h.j.addCall(call{API: h.name, Method: r.Method, Path: r.URL.Path, ID: id, Origin: r.Header.Get("Origin"), Session: sessionOf(r)})
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasPrefix(r.URL.Path, "/p/report/") && h.ownCORS(w, r) {
		return
	}
	w.Header().Set("X-Request-Cost", "42")
	w.Header().Set("X-Internal-Trace", "trace-"+id)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply{API: h.name, Method: r.Method, ID: id, User: sessionOf(r)})
}

// ownCORS is the API's own, hand-written CORS configuration for /p/report/.
// It reports whether it answered the request (a preflight).
func (h *apiHandler) ownCORS(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin != h.ownOrigin {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Allow-Credentials", "true")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "PUT")
		w.Header().Set("Access-Control-Allow-Headers", "X-Api-Key")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}
