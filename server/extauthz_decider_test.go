package server

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
)

// extauthzDecider is a test decider over policies compiled with the real
// engine: it selects by name, then by exact host (with the port stripped on
// a miss), then the default. It records the last selection it was asked for.
type extauthzDecider struct {
	byName      map[string]*policy.Policy
	byHost      map[string]*policy.Policy
	def         *policy.Policy
	unavailable bool

	mu       sync.Mutex
	lastName string
	lastReq  policy.Request
}

var _ decider = (*extauthzDecider)(nil)

func (t *extauthzDecider) Decide(_ context.Context, name string, r policy.Request) (policy.Decision, error) {
	t.mu.Lock()
	t.lastName, t.lastReq = name, r
	t.mu.Unlock()
	if t.unavailable {
		return policy.Decision{}, status.Error(codes.Unavailable, "policies are not loaded yet; retry shortly")
	}
	var p *policy.Policy
	switch {
	case name != "":
		p = t.byName[name]
	default:
		h := strings.ToLower(r.Host)
		p = t.byHost[h]
		if p == nil {
			if host, _, err := net.SplitHostPort(h); err == nil {
				p = t.byHost[host]
			}
		}
		if p == nil {
			p = t.def
		}
	}
	return p.Check(r), nil
}

func (t *extauthzDecider) last() (string, policy.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastName, t.lastReq
}

// extauthzGoldenConfig is the policy the golden files are made with.
func extauthzGoldenConfig() policy.Config {
	return policy.Config{
		Name:                  "policies/acme",
		Revision:              7,
		Origins:               []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}},
		AllowedMethods:        []string{"GET", "PUT"},
		AllowedRequestHeaders: []string{"content-type", "authorization"},
		MaxAge:                600 * time.Second,
		MaxAgeSet:             true,
		Hosts:                 []string{"api.example.com"},
	}
}

// newExtauthzDecider compiles the test policies:
//   - acme (api.example.com): the golden policy;
//   - public (public.example.com): any origin, no credentials;
//   - guarded (guarded.example.com): cross-origin protection, trusts app;
//   - shadow (shadow.example.com): report-only, trusts app;
//   - off (off.example.com): disabled.
func newExtauthzDecider(tb testing.TB) *extauthzDecider {
	tb.Helper()
	app := []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}}
	cfgs := []policy.Config{
		extauthzGoldenConfig(),
		{Name: "policies/public", Revision: 3, Origins: []policy.Origin{{Pattern: "*"}}, Hosts: []string{"public.example.com"}, ExposedResponseHeaders: []string{"X-Request-Id"}},
		{Name: "policies/guarded", Revision: 4, Origins: app, Hosts: []string{"guarded.example.com"}, CrossOriginProtection: true, AllowedMethods: []string{"POST"}},
		{Name: "policies/shadow", Revision: 5, Origins: app, Hosts: []string{"shadow.example.com"}, Mode: policy.ModeReportOnly, AllowedMethods: []string{"PUT"}},
		{Name: "policies/off", Revision: 6, Origins: app, Hosts: []string{"off.example.com"}, Mode: policy.ModeDisabled},
	}
	d := &extauthzDecider{byName: map[string]*policy.Policy{}, byHost: map[string]*policy.Policy{}}
	for _, c := range cfgs {
		p, err := policy.Compile(c)
		if err != nil {
			tb.Fatalf("policy.Compile(%s): %v", c.Name, err)
		}
		d.byName[c.Name] = p
		for _, h := range c.Hosts {
			d.byHost[h] = p
		}
	}
	return d
}
