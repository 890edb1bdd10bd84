package server

import (
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// entry is one compiled policy of a snapshot. Entries are immutable.
type entry struct {
	name     string
	rev      int64
	pol      *policy.Policy
	counters *decisionCounters
}

// snapshot is an immutable view of the compiled policies, with the indexes
// that select a policy for a request. A new snapshot replaces the old one
// whole; readers never lock.
type snapshot struct {
	// rev is the highest store revision applied.
	rev    int64
	byName map[string]*entry
	// exact maps a normalized host to its policy; wildcard maps the suffix
	// of a wildcard host including its dot (".api.example.com" for
	// "*.api.example.com").
	exact    map[string]*entry
	wildcard map[string]*entry
	// wildcardLens has bit n set when some wildcard key is n bytes long,
	// and maxWildcardLen is the longest: a lookup probes only the suffixes
	// of those lengths, so its cost is bounded by the configured hosts, not
	// by the request's host.
	wildcardLens   [(maxRequestHostLen + 64) / 64]uint64
	maxWildcardLen int
	// def is the configured default policy, nil when absent.
	def *entry
}

// lookup selects the policy for a request: by name when name is set (nil
// when unknown); else by host, exact then wildcard, first with the port
// and then without it; else the default policy.
func (s *snapshot) lookup(name, host string) *entry {
	if name != "" {
		if len(name) > maxPolicyNameLen {
			return nil // names no policy; not worth hashing
		}
		return s.byName[name]
	}
	// A host longer than any DNS name with a port names no configured host:
	// skip it before any work proportional to its length.
	if host != "" && len(host) <= maxRequestHostLen && (len(s.exact) > 0 || len(s.wildcard) > 0) {
		host = canonicalHost(host)
		if e := s.byHost(host); e != nil {
			return e
		}
		if h, ok := stripPort(host); ok {
			if e := s.byHost(h); e != nil {
				return e
			}
		}
	}
	return s.def
}

func (s *snapshot) byHost(h string) *entry {
	if e := s.exact[h]; e != nil {
		return e
	}
	if len(s.wildcard) == 0 {
		return nil
	}
	// Longest suffix first: the most specific wildcard wins. Only suffixes
	// as long as some wildcard key are probed. Substrings of h as map keys
	// do not allocate.
	for i := max(0, len(h)-s.maxWildcardLen); i < len(h); i++ {
		if h[i] == '.' && s.hasWildcardLen(len(h)-i) {
			if e := s.wildcard[h[i:]]; e != nil {
				return e
			}
		}
	}
	return nil
}

// maxRequestHostLen is the longest host[:port] that a configured host can
// match: a 253-byte DNS name, a trailing dot and ":65535".
const maxRequestHostLen = 253 + 1 + 6

func (s *snapshot) hasWildcardLen(n int) bool {
	return n <= maxRequestHostLen && s.wildcardLens[n/64]&(1<<(n%64)) != 0
}

func (s *snapshot) addWildcardLen(n int) {
	if n <= maxRequestHostLen { // always: normalized hosts are DNS names
		s.wildcardLens[n/64] |= 1 << (n % 64)
		s.maxWildcardLen = max(s.maxWildcardLen, n)
	}
}

// canonicalHost lower-cases h and drops a trailing dot of the host part,
// allocating only when h needs a change.
func canonicalHost(h string) string {
	needLower := false
	for i := range len(h) {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			needLower = true
			break
		}
	}
	if needLower {
		h = strings.ToLower(h)
	}
	if hostPart, port, ok := splitHostPort(h); ok {
		if trimmed, ok := strings.CutSuffix(hostPart, "."); ok {
			return trimmed + ":" + port
		}
		return h
	}
	return strings.TrimSuffix(h, ".")
}

// stripPort returns h without its port, if it has one.
func stripPort(h string) (string, bool) {
	hostPart, _, ok := splitHostPort(h)
	return hostPart, ok
}

// splitHostPort splits "host:port" and "[v6]:port"; ok is false when h has
// no port. Brackets of an IPv6 literal are kept in the host part, as
// :authority carries them.
func splitHostPort(h string) (host, port string, ok bool) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 {
		return h, "", false
	}
	if strings.HasPrefix(h, "[") {
		if h[i-1] != ']' {
			return h, "", false // "[::1]" without a port
		}
	} else if strings.IndexByte(h, ':') != i {
		return h, "", false // a bare IPv6 literal
	}
	return h[:i], h[i+1:], true
}

// live owns the current snapshot and applies changes to it, one writer at a
// time, copy-on-write.
type live struct {
	cur     atomic.Pointer[snapshot]
	metrics *metrics
	log     *slog.Logger
	defName string

	mu sync.Mutex // serializes writers; readers only Load cur
	// tombstones: revision of deletes applied ahead of the watch stream, so
	// that an older PUT still in the stream does not resurrect the policy.
	tombstones map[string]int64
	// watchRev is the last revision received from the store's watch.
	watchRev int64
	counters map[string]*decisionCounters
}

func newLive(m *metrics, log *slog.Logger, defName string) *live {
	return &live{metrics: m, log: log, defName: defName, tombstones: map[string]int64{}, counters: map[string]*decisionCounters{}}
}

// appliedRev returns the revision of the last change applied to name (a
// put or a delete); 0 when none is known. Callers hold mu.
func (l *live) appliedRev(s *snapshot, name string) int64 {
	if s != nil {
		if e := s.byName[name]; e != nil {
			return e.rev
		}
	}
	return l.tombstones[name]
}

// compile compiles a stored policy. A stored policy that the engine refuses
// (possible only after an engine upgrade made validation stricter) is
// logged and left out: requests then get no policy, the safe side for CORS.
func (l *live) compile(p *corsdv1.Policy) *policy.Policy {
	pol, err := policypb.Compile(p)
	if err != nil {
		l.log.Error("stored policy does not compile; it is left out of decisions", "policy", p.GetName(), "revision", p.GetRevision(), "err", err)
		return nil
	}
	return pol
}

func (l *live) countersFor(name string) *decisionCounters {
	dc := l.counters[name]
	if dc == nil {
		dc = l.metrics.countersFor(name)
		l.counters[name] = dc
	}
	return dc
}

// put applies a created or updated policy unless a newer change to it was
// already applied. fromWatch says the change came from the store's watch.
func (l *live) put(p *corsdv1.Policy, fromWatch bool) {
	pol := l.compile(p) // outside the lock: compiling is the expensive part
	l.mu.Lock()
	defer l.mu.Unlock()
	if fromWatch {
		l.advanceWatch(p.GetRevision())
	}
	old := l.cur.Load()
	if old == nil {
		return // not loaded yet: the initial load will include it
	}
	name := p.GetName()
	if l.appliedRev(old, name) >= p.GetRevision() {
		return // a newer change to it is already applied
	}
	byName := maps.Clone(old.byName)
	if pol == nil {
		delete(byName, name)
		l.tombstones[name] = p.GetRevision()
	} else {
		byName[name] = &entry{name: name, rev: p.GetRevision(), pol: pol, counters: l.countersFor(name)}
		delete(l.tombstones, name)
	}
	l.publish(old, byName, p.GetRevision())
}

// del applies a delete at revision rev unless a newer change was applied.
func (l *live) del(name string, rev int64, fromWatch bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fromWatch {
		l.advanceWatch(rev)
	}
	old := l.cur.Load()
	if old == nil {
		return
	}
	if l.appliedRev(old, name) >= rev {
		return
	}
	if _, ok := old.byName[name]; !ok {
		l.tombstones[name] = rev
		return
	}
	l.tombstones[name] = rev
	byName := maps.Clone(old.byName)
	delete(byName, name)
	delete(l.counters, name)
	l.metrics.forget(name)
	l.publish(old, byName, rev)
}

// reset replaces the whole state with the store's state as of rev (the
// initial load, or a reload after the watch's revision was compacted).
// Changes applied by admin writes after rev are kept.
func (l *live) reset(state map[string]*corsdv1.Policy, rev int64) {
	compiled := make(map[string]*policy.Policy, len(state))
	for name, p := range state {
		if pol := l.compile(p); pol != nil {
			compiled[name] = pol
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advanceWatch(rev)
	old := l.cur.Load()
	byName := make(map[string]*entry, len(state))
	for name, p := range state {
		if pol := compiled[name]; pol != nil {
			byName[name] = &entry{name: name, rev: p.GetRevision(), pol: pol, counters: l.countersFor(name)}
		}
	}
	if old != nil {
		// Keep what admin writes applied past rev: newer entries, and
		// absences of policies deleted past rev.
		for name, e := range old.byName {
			if e.rev > rev {
				byName[name] = e
			}
		}
		for name, trev := range l.tombstones {
			if trev > rev {
				delete(byName, name)
			}
		}
	}
	for name := range l.counters {
		if _, ok := byName[name]; !ok {
			delete(l.counters, name)
			l.metrics.forget(name)
		}
	}
	l.publish(old, byName, rev)
}

// advanceWatch records the watch position and forgets the tombstones it
// has passed: the stream can no longer deliver older changes for them.
// Callers hold mu.
func (l *live) advanceWatch(rev int64) {
	if rev <= l.watchRev {
		return
	}
	l.watchRev = rev
	for name, trev := range l.tombstones {
		if trev <= rev {
			delete(l.tombstones, name)
		}
	}
}

// publish builds the indexes of byName and swaps the new snapshot in.
// Callers hold mu.
func (l *live) publish(old *snapshot, byName map[string]*entry, rev int64) {
	s := &snapshot{byName: byName, rev: rev, exact: map[string]*entry{}, wildcard: map[string]*entry{}}
	if old != nil && old.rev > rev {
		s.rev = old.rev
	}
	for _, e := range byName {
		for _, h := range e.pol.Hosts() {
			h = strings.ToLower(h)
			idx, key := s.exact, h
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				idx, key = s.wildcard, suffix
				s.addWildcardLen(len(key))
			}
			// Two policies claiming one host: the smaller name wins, so the
			// choice does not depend on map order.
			if cur := idx[key]; cur == nil || e.name < cur.name {
				idx[key] = e
			}

		}
	}
	s.def = byName[l.defName]
	l.cur.Store(s)
	l.metrics.snapshotRevision.Set(float64(s.rev))
	l.metrics.snapshotPolicies.Set(float64(len(byName)))
}

// hostOwner returns the name of another policy than self that governs
// host in the current snapshot, or "".
func (l *live) hostOwner(self, host string) string {
	s := l.cur.Load()
	if s == nil {
		return ""
	}
	host = strings.ToLower(host)
	idx, key := s.exact, host
	if suffix, ok := strings.CutPrefix(host, "*"); ok {
		idx, key = s.wildcard, suffix
	}
	if e := idx[key]; e != nil && e.name != self {
		return e.name
	}
	return ""
}
