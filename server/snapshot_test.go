package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// snapshotOf publishes compiled policies into a fresh live.
func snapshotOf(t testing.TB, defName string, cfgs ...policy.Config) *live {
	t.Helper()
	l := newLive(newMetrics(), discardLogger(), defName)
	byName := map[string]*entry{}
	for _, c := range cfgs {
		p, err := policy.Compile(c)
		if err != nil {
			t.Fatalf("Compile(%s): %v", c.Name, err)
		}
		byName[c.Name] = &entry{name: c.Name, rev: c.Revision, pol: p, counters: l.countersFor(c.Name)}
	}
	l.mu.Lock()
	l.publish(nil, byName, 1)
	l.mu.Unlock()
	return l
}

func TestSnapshotLookup(t *testing.T) {
	l := snapshotOf(t, "policies/default",
		policy.Config{Name: "policies/api", Hosts: []string{"api.example.com"}},
		policy.Config{Name: "policies/api-8443", Hosts: []string{"api.example.com:8443"}},
		policy.Config{Name: "policies/wild", Hosts: []string{"*.example.com"}},
		policy.Config{Name: "policies/deep", Hosts: []string{"*.eu.example.com"}},
		policy.Config{Name: "policies/v6", Hosts: []string{"[::1]", "127.0.0.1"}},
		policy.Config{Name: "policies/aaa", Hosts: []string{"shared.example.net"}},
		policy.Config{Name: "policies/zzz", Hosts: []string{"shared.example.net"}},
		policy.Config{Name: "policies/default"},
	)
	s := l.cur.Load()
	tests := []struct {
		name, policy, host string
		want               string // "" for no policy
	}{
		{name: "exact", host: "api.example.com", want: "policies/api"},
		{name: "exact with port, port-less entry", host: "api.example.com:443", want: "policies/api"},
		{name: "exact with the entry's port", host: "api.example.com:8443", want: "policies/api-8443"},
		{name: "upper case", host: "API.Example.COM", want: "policies/api"},
		{name: "trailing dot", host: "api.example.com.", want: "policies/api"},
		{name: "trailing dot with port", host: "api.example.com.:443", want: "policies/api"},
		{name: "wildcard one label", host: "www.example.com", want: "policies/wild"},
		{name: "wildcard two labels", host: "a.b.example.com", want: "policies/wild"},
		{name: "most specific wildcard", host: "x.eu.example.com", want: "policies/deep"},
		{name: "wildcard with port", host: "www.example.com:8080", want: "policies/wild"},
		{name: "wildcard never the apex", host: "example.com", want: "policies/default"},
		{name: "apex of deeper wildcard", host: "eu.example.com", want: "policies/wild"},
		{name: "ipv6 with port", host: "[::1]:8080", want: "policies/v6"},
		{name: "ipv6", host: "[::1]", want: "policies/v6"},
		{name: "ipv4 with port", host: "127.0.0.1:9", want: "policies/v6"},
		{name: "conflict: smaller name wins", host: "shared.example.net", want: "policies/aaa"},
		{name: "unknown host: default", host: "other.example.org", want: "policies/default"},
		{name: "no host: default", host: "", want: "policies/default"},
		{name: "name wins over host", policy: "policies/wild", host: "api.example.com", want: "policies/wild"},
		{name: "unknown name: none, not the default", policy: "policies/nope", host: "api.example.com", want: ""},
		{name: "suffix trick", host: "evilexample.com", want: "policies/default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if e := s.lookup(tt.policy, tt.host); e != nil {
				got = e.name
			}
			if got != tt.want {
				t.Errorf("lookup(%q, %q) = %q, want %q", tt.policy, tt.host, got, tt.want)
			}
		})
	}
	noDefault := snapshotOf(t, "", policy.Config{Name: "policies/api", Hosts: []string{"api.example.com"}}).cur.Load()
	if e := noDefault.lookup("", "other.example.com"); e != nil {
		t.Errorf("lookup without a default = %s, want none", e.name)
	}
}

func FuzzSnapshotLookup(f *testing.F) {
	l := snapshotOf(f, "",
		policy.Config{Name: "policies/api", Hosts: []string{"api.example.com", "api.example.com:8443"}},
		policy.Config{Name: "policies/wild", Hosts: []string{"*.example.com", "[::1]"}},
	)
	s := l.cur.Load()
	for _, h := range []string{"api.example.com", "API.example.com.:8443", "[::1]:80", "[::1", ":", ".", "a..example.com", "[]:"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		e := s.lookup("", host)
		// Deterministic, and never a policy for a host that does not end in
		// one of the governed names.
		if e2 := s.lookup("", host); e != e2 {
			t.Fatalf("lookup(%q) not deterministic", host)
		}
		h, _ := stripPort(canonicalHost(host))
		if e != nil && e.name == "policies/api" && h != "api.example.com" {
			t.Fatalf("lookup(%q) = policies/api", host)
		}
	})
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in, host, port string
		ok             bool
	}{
		{"a.example:80", "a.example", "80", true},
		{"a.example", "a.example", "", false},
		{"[::1]:80", "[::1]", "80", true},
		{"[::1]", "[::1]", "", false},
		{"::1", "::1", "", false},
		{"a.example:", "a.example", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, port, ok := splitHostPort(tt.in)
			if host != tt.host || port != tt.port || ok != tt.ok {
				t.Errorf("splitHostPort(%q) = %q, %q, %v; want %q, %q, %v", tt.in, host, port, ok, tt.host, tt.port, tt.ok)
			}
		})
	}
}

func pol(name string, rev int64, hosts ...string) *corsdv1.Policy {
	return &corsdv1.Policy{Name: name, Revision: rev, Hosts: hosts}
}

// TestLiveOrdering: an older change never overwrites a newer one, whether
// the admin path or the watch delivers it first.
func TestLiveOrdering(t *testing.T) {
	revOf := func(l *live, name string) int64 {
		if e := l.cur.Load().byName[name]; e != nil {
			return e.rev
		}
		return -1 // absent
	}
	tests := []struct {
		name  string
		steps func(l *live)
		want  int64
	}{
		{name: "newer put wins", steps: func(l *live) { l.put(pol("policies/a", 5), false); l.put(pol("policies/a", 3), true) }, want: 5},
		{name: "put then newer put", steps: func(l *live) { l.put(pol("policies/a", 3), true); l.put(pol("policies/a", 5), false) }, want: 5},
		{name: "delete not undone by an older put", steps: func(l *live) {
			l.put(pol("policies/a", 2), false)
			l.del("policies/a", 6, false)
			l.put(pol("policies/a", 2), true)
		}, want: -1},
		{name: "older delete ignored", steps: func(l *live) { l.put(pol("policies/a", 7), false); l.del("policies/a", 6, true) }, want: 7},
		{name: "recreate after delete", steps: func(l *live) { l.del("policies/a", 6, false); l.put(pol("policies/a", 8), true) }, want: 8},
		{
			name: "reload keeps newer admin writes",
			steps: func(l *live) {
				l.put(pol("policies/a", 9), false)
				l.reset(map[string]*corsdv1.Policy{"policies/a": pol("policies/a", 4)}, 5)
			},
			want: 9,
		},
		{
			name: "reload keeps newer admin deletes",
			steps: func(l *live) {
				l.del("policies/a", 9, false)
				l.reset(map[string]*corsdv1.Policy{"policies/a": pol("policies/a", 4)}, 5)
			},
			want: -1,
		},
		{
			name: "reload drops what the store no longer has",
			steps: func(l *live) {
				l.put(pol("policies/a", 3), true)
				l.reset(map[string]*corsdv1.Policy{}, 5)
			},
			want: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLive(newMetrics(), discardLogger(), "")
			l.reset(nil, 1)
			tt.steps(l)
			if got := revOf(l, "policies/a"); got != tt.want {
				t.Errorf("revision of policies/a = %d, want %d (-1: absent)", got, tt.want)
			}
		})
	}
}

func TestLiveHostIndexFollowsUpdates(t *testing.T) {
	l := newLive(newMetrics(), discardLogger(), "")
	l.reset(nil, 1)
	l.put(pol("policies/a", 2, "a.example.com"), false)
	l.put(pol("policies/a", 3, "b.example.com"), false)
	s := l.cur.Load()
	if e := s.lookup("", "a.example.com"); e != nil {
		t.Errorf("old host still selects %s", e.name)
	}
	if e := s.lookup("", "b.example.com"); e == nil || e.name != "policies/a" {
		t.Errorf("new host selects %v, want policies/a", e)
	}
	if owner := l.hostOwner("policies/b", "B.example.com"); owner != "policies/a" {
		t.Errorf("hostOwner = %q, want policies/a", owner)
	}
	if owner := l.hostOwner("policies/a", "b.example.com"); owner != "" {
		t.Errorf("hostOwner of its own host = %q, want none", owner)
	}
}

// BenchmarkDecide measures policy selection by host plus the check, with
// metrics, over a snapshot of 1000 policies.
func BenchmarkDecide(b *testing.B) {
	cfgs := make([]policy.Config, 0, 1000)
	for i := range 1000 {
		cfgs = append(cfgs, policy.Config{
			Name:           fmt.Sprintf("policies/p%d", i),
			Hosts:          []string{fmt.Sprintf("api%d.example.com", i), fmt.Sprintf("*.svc%d.example.com", i)},
			Origins:        []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}, {Pattern: "https://*.partner.example"}},
			AllowedMethods: []string{"PUT", "DELETE"},
		})
	}
	l := snapshotOf(b, "", cfgs...)
	s := &Server{live: l, metrics: l.metrics, log: discardLogger()}
	ctx := context.Background()
	cases := []struct {
		name string
		req  policy.Request
	}{
		{name: "exact host actual", req: policy.Request{Method: "GET", Host: "api500.example.com", Origin: "https://app.example.com"}},
		{name: "wildcard host with port preflight", req: policy.Request{Method: "OPTIONS", Host: "x.svc700.example.com:8443", Origin: "https://a.partner.example", AccessControlRequestMethod: "PUT"}},
		{name: "no policy", req: policy.Request{Method: "GET", Host: "unknown.example.org", Origin: "https://app.example.com"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := s.Decide(ctx, "", c.req)
				if err != nil || d.Reason == policy.ReasonUnspecified {
					b.Fatalf("Decide = %v, %v", d.Reason, err)
				}
			}
		})
	}
	b.Run("parallel exact host", func(b *testing.B) {
		b.ReportAllocs()
		req := cases[0].req
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Decide(ctx, "", req); err != nil {
					b.Error(err)
				}
			}
		})
	})
}
