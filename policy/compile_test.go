package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustCompile(tb testing.TB, c Config) *Policy {
	tb.Helper()
	p, err := Compile(c)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return p
}

// wantFieldError is what a test expects of one FieldError.
type wantFieldError struct {
	Field  string
	Reason string // substring
}

func TestCompileValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []wantFieldError
	}{
		{
			name: "valid policy",
			cfg: Config{
				Origins: []Origin{
					{Pattern: "https://app.example.com", AllowCredentials: true},
					{Pattern: "https://*.example.com", AllowCredentials: true},
					{Pattern: "http://localhost:*", AllowCredentials: true},
					{Pattern: "http://127.0.0.1:8080", AllowCredentials: true},
					{Pattern: "http://[::1]:8080", AllowCredentials: true},
					{Pattern: "http://dev.localhost", AllowCredentials: true},
					{Pattern: "http://*.localhost", AllowCredentials: true},
					{Pattern: "*"},
					{Pattern: "null"},
				},
				AllowedMethods:         []string{"GET", "put", "PATCH", "*"},
				AllowedRequestHeaders:  []string{"Content-Type", "Authorization", "*"},
				ExposedResponseHeaders: []string{"X-Request-Id", "*"},
				MaxAge:                 2 * time.Hour, MaxAgeSet: true,
				Hosts:                  []string{"api.example.com", "*.api.example.com"},
				PreflightSuccessStatus: 200,
				PreflightFailureStatus: 400,
				Mode:                   ModeReportOnly,
			},
		},
		{
			name: "malformed patterns",
			cfg: Config{Origins: []Origin{
				{Pattern: "https://app.example.com/"},
				{Pattern: "https://ok.example.com"},
				{Pattern: "app.example.com"},
				{Pattern: "https://*.*.example.com:*"},
			}},
			want: []wantFieldError{
				{Field: "origins[0].pattern", Reason: "slash"},
				{Field: "origins[2].pattern", Reason: "no scheme"},
				{Field: "origins[3].pattern", Reason: "leftmost label"},
			},
		},
		{
			name: "star with credentials",
			cfg:  Config{Origins: []Origin{{Pattern: "*", AllowCredentials: true, DangerouslyAllowInsecureCredentials: true, DangerouslyAllowCredentialsUnderPublicSuffix: true}}},
			want: []wantFieldError{{Field: "origins[0].allow_credentials", Reason: `"*" never allows credentials`}},
		},
		{
			name: "null with credentials",
			cfg:  Config{Origins: []Origin{{Pattern: "null", AllowCredentials: true, DangerouslyAllowInsecureCredentials: true}}},
			want: []wantFieldError{{Field: "origins[0].allow_credentials", Reason: `"null" never allows credentials`}},
		},
		{
			name: "insecure credentials",
			cfg: Config{Origins: []Origin{
				{Pattern: "http://app.example.com", AllowCredentials: true},
				{Pattern: "http://*.example.com", AllowCredentials: true},
				{Pattern: "http://192.168.1.1", AllowCredentials: true},
				{Pattern: "http://intranet:*", AllowCredentials: true},
			}},
			want: []wantFieldError{
				{Field: "origins[0].allow_credentials", Reason: "network attacker"},
				{Field: "origins[1].allow_credentials", Reason: "network attacker"},
				{Field: "origins[2].allow_credentials", Reason: "network attacker"},
				{Field: "origins[3].allow_credentials", Reason: "network attacker"},
			},
		},
		{
			name: "insecure credentials overridden",
			cfg: Config{Origins: []Origin{
				{Pattern: "http://app.example.com", AllowCredentials: true, DangerouslyAllowInsecureCredentials: true},
			}},
		},
		{
			name: "credentials under public suffixes",
			cfg: Config{Origins: []Origin{
				{Pattern: "https://*.github.io", AllowCredentials: true},
				{Pattern: "https://*.com", AllowCredentials: true},
				{Pattern: "https://*.co.uk", AllowCredentials: true},
				{Pattern: "https://*.example.co.uk", AllowCredentials: true},
				{Pattern: "https://*.acme.github.io", AllowCredentials: true},
				{Pattern: "https://*.herokuapp.com"},
			}},
			want: []wantFieldError{
				{Field: "origins[0].pattern", Reason: `public suffix "github.io"`},
				{Field: "origins[1].pattern", Reason: `public suffix "com"`},
				{Field: "origins[2].pattern", Reason: `public suffix "co.uk"`},
				{Field: "origins[5].pattern", Reason: `public suffix "herokuapp.com"`},
			},
		},
		{
			name: "wildcards under public suffixes without credentials",
			cfg: Config{Origins: []Origin{
				{Pattern: "http://*.com"},
				{Pattern: "https://*.github.io:8443"},
				{Pattern: "https://*.example.com"},
			}},
			want: []wantFieldError{
				{Field: "origins[0].pattern", Reason: `public suffix "com"`},
				{Field: "origins[1].pattern", Reason: `public suffix "github.io"`},
			},
		},
		{
			name: "wildcard under a public suffix overridden",
			cfg: Config{Origins: []Origin{
				{Pattern: "https://*.github.io", DangerouslyAllowWildcardUnderPublicSuffix: true},
			}},
		},
		{
			name: "credentials under a public suffix overridden",
			cfg: Config{Origins: []Origin{
				{Pattern: "https://*.github.io", AllowCredentials: true, DangerouslyAllowCredentialsUnderPublicSuffix: true},
			}},
		},
		{
			name: "duplicate rules after normalization",
			cfg: Config{Origins: []Origin{
				{Pattern: "https://app.example.com"},
				{Pattern: "HTTPS://APP.example.com:443"},
				{Pattern: "https://bücher.example"},
				{Pattern: "https://xn--bcher-kva.example"},
				{Pattern: "*"},
				{Pattern: "*"},
			}},
			want: []wantFieldError{
				{Field: "origins[1].pattern", Reason: "duplicates origins[0]"},
				{Field: "origins[3].pattern", Reason: "duplicates origins[2]"},
				{Field: "origins[5].pattern", Reason: "duplicates origins[4]"},
			},
		},
		{
			name: "too many origins",
			cfg:  Config{Origins: make([]Origin, MaxOrigins+1)},
			want: append([]wantFieldError{{Field: "origins", Reason: "at most"}}, func() (w []wantFieldError) {
				for i := range MaxOrigins {
					w = append(w, wantFieldError{Field: fmt.Sprintf("origins[%d].pattern", i), Reason: "empty"})
				}
				return w
			}()...),
		},
		{
			name: "long description",
			cfg:  Config{Origins: []Origin{{Pattern: "https://a.example", Description: strings.Repeat("x", MaxDescriptionLength+1)}}},
			want: []wantFieldError{{Field: "origins[0].description", Reason: "the limit is"}},
		},
		{
			name: "methods",
			cfg: Config{AllowedMethods: []string{
				"CONNECT", "trace", "Track", "GET", "get", "", "PUT DELETE", "PATCH", "patch", "*", strings.Repeat("M", MaxNameLength+1),
			}},
			want: []wantFieldError{
				{Field: "allowed_methods[0]", Reason: "forbidden"},
				{Field: "allowed_methods[1]", Reason: "forbidden"},
				{Field: "allowed_methods[2]", Reason: "forbidden"},
				{Field: "allowed_methods[4]", Reason: "duplicates allowed_methods[3]"},
				{Field: "allowed_methods[5]", Reason: "empty"},
				{Field: "allowed_methods[6]", Reason: "not a valid HTTP token"},
				{Field: "allowed_methods[10]", Reason: "longer than"},
			},
		},
		{
			name: "too many methods",
			cfg:  Config{AllowedMethods: make([]string, MaxMethods+1)},
			want: append([]wantFieldError{{Field: "allowed_methods", Reason: "at most"}}, func() (w []wantFieldError) {
				for i := range MaxMethods {
					w = append(w, wantFieldError{Field: fmt.Sprintf("allowed_methods[%d]", i), Reason: "empty"})
				}
				return w
			}()...),
		},
		{
			name: "request headers",
			cfg: Config{AllowedRequestHeaders: []string{
				"X-Token", "x-token", "Cookie", "Proxy-Authorization", "Sec-Fetch-Mode", "Host", "Content-Type, X-Other", "", "Origin", "accept-encoding", "Authorization",
			}},
			want: []wantFieldError{
				{Field: "allowed_request_headers[1]", Reason: "duplicates allowed_request_headers[0]"},
				{Field: "allowed_request_headers[2]", Reason: "forbidden request header"},
				{Field: "allowed_request_headers[3]", Reason: "forbidden request header"},
				{Field: "allowed_request_headers[4]", Reason: "forbidden request header"},
				{Field: "allowed_request_headers[5]", Reason: "forbidden request header"},
				{Field: "allowed_request_headers[6]", Reason: "not a valid HTTP token"},
				{Field: "allowed_request_headers[7]", Reason: "empty"},
				{Field: "allowed_request_headers[8]", Reason: "forbidden request header"},
				{Field: "allowed_request_headers[9]", Reason: "forbidden request header"},
			},
		},
		{
			name: "exposed headers",
			cfg:  Config{ExposedResponseHeaders: []string{"X-Request-Id", "Set-Cookie", "set-cookie2", "x-request-id", "a b", "*"}},
			want: []wantFieldError{
				{Field: "exposed_response_headers[1]", Reason: "never expose"},
				{Field: "exposed_response_headers[2]", Reason: "never expose"},
				{Field: "exposed_response_headers[3]", Reason: "duplicates exposed_response_headers[0]"},
				{Field: "exposed_response_headers[4]", Reason: "not a valid HTTP token"},
			},
		},
		{
			name: "hosts longer than DNS allows",
			cfg: Config{
				Origins: []Origin{
					{Pattern: "https://*." + dnsName(251)},
					{Pattern: "https://*." + dnsName(252), AllowCredentials: true},
					{Pattern: "https://" + dnsName(254)},
					{Pattern: "https://*." + strings.Repeat("b", 64) + ".example.com"},
				},
				Hosts: []string{"*." + dnsName(252), dnsName(253)},
			},
			want: []wantFieldError{
				{Field: "origins[1].pattern", Reason: "no origin can match it"},
				{Field: "origins[2].pattern", Reason: "DNS names are at most 253"},
				{Field: "origins[3].pattern", Reason: "DNS labels are at most 63"},
				{Field: "hosts[0]", Reason: "no host can match it"},
			},
		},
		{
			name: "response-only names as request headers",
			cfg: Config{AllowedRequestHeaders: []string{
				"Access-Control-Allow-Origin", "access-control-allow-origin", "Access-Control-Allow-Credentials",
				"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Allow-Private-Network",
				"Access-Control-Expose-Headers", "Access-Control-Max-Age", "Set-Cookie", "set-cookie2", "X-Allowed",
			}},
			want: func() []wantFieldError {
				var w []wantFieldError
				for i := range 10 {
					w = append(w, wantFieldError{Field: fmt.Sprintf("allowed_request_headers[%d]", i), Reason: "response-only header"})
				}
				return w
			}(),
		},
		{
			name: "request-only names as exposed headers",
			cfg: Config{ExposedResponseHeaders: []string{
				"Access-Control-Request-Method", "access-control-request-headers", "Access-Control-Request-Private-Network",
				"Origin", "X-Exposed", "Access-Control-Allow-Origin",
			}},
			want: []wantFieldError{
				{Field: "exposed_response_headers[0]", Reason: "request-only header"},
				{Field: "exposed_response_headers[1]", Reason: "request-only header"},
				{Field: "exposed_response_headers[2]", Reason: "request-only header"},
				{Field: "exposed_response_headers[3]", Reason: "request-only header"},
			},
		},
		{
			name: "too many headers",
			cfg: Config{
				AllowedRequestHeaders:  manyHeaders(MaxHeaderNames + 1),
				ExposedResponseHeaders: manyHeaders(MaxHeaderNames + 1),
			},
			want: []wantFieldError{
				{Field: "allowed_request_headers", Reason: "at most"},
				{Field: "exposed_response_headers", Reason: "at most"},
			},
		},
		{
			name: "max age too large",
			cfg:  Config{MaxAge: 86401 * time.Second, MaxAgeSet: true},
			want: []wantFieldError{{Field: "max_age", Reason: "between 0 and 86400"}},
		},
		{
			name: "max age negative",
			cfg:  Config{MaxAge: -time.Second, MaxAgeSet: true},
			want: []wantFieldError{{Field: "max_age", Reason: "between 0 and 86400"}},
		},
		{
			name: "max age fraction",
			cfg:  Config{MaxAge: 1500 * time.Millisecond, MaxAgeSet: true},
			want: []wantFieldError{{Field: "max_age", Reason: "whole number of seconds"}},
		},
		{
			name: "max age limits",
			cfg:  Config{MaxAge: 86400 * time.Second, MaxAgeSet: true},
		},
		{
			name: "max age unset ignores the value",
			cfg:  Config{MaxAge: -time.Hour},
		},
		{
			name: "hosts",
			cfg:  Config{Hosts: []string{"api.example.com", "API.example.com", "https://api.example.com", "*.*.example.com"}},
			want: []wantFieldError{
				{Field: "hosts[1]", Reason: "duplicates hosts[0]"},
				{Field: "hosts[2]", Reason: "no scheme"},
				{Field: "hosts[3]", Reason: "whole leftmost label"},
			},
		},
		{
			name: "too many hosts",
			cfg:  Config{Hosts: manyHosts(MaxHosts + 1)},
			want: []wantFieldError{{Field: "hosts", Reason: "at most"}},
		},
		{
			name: "statuses",
			cfg:  Config{PreflightSuccessStatus: 201, PreflightFailureStatus: 500},
			want: []wantFieldError{
				{Field: "preflight_success_status", Reason: "200 or 204"},
				{Field: "preflight_failure_status", Reason: "between 400 and 499"},
			},
		},
		{
			name: "failure status below range",
			cfg:  Config{PreflightFailureStatus: 399},
			want: []wantFieldError{{Field: "preflight_failure_status", Reason: "between 400 and 499"}},
		},
		{
			name: "unknown mode",
			cfg:  Config{Mode: ModeDisabled + 1},
			want: []wantFieldError{{Field: "mode", Reason: "unknown mode"}},
		},
		{
			name: "every problem at once",
			cfg: Config{
				Origins:                []Origin{{Pattern: "*", AllowCredentials: true}, {Pattern: "https://x.example/"}},
				AllowedMethods:         []string{"TRACE"},
				AllowedRequestHeaders:  []string{"Cookie"},
				ExposedResponseHeaders: []string{"Set-Cookie"},
				MaxAge:                 time.Hour * 48, MaxAgeSet: true,
				Hosts:                  []string{""},
				PreflightSuccessStatus: 302,
				PreflightFailureStatus: 302,
			},
			want: []wantFieldError{
				{Field: "origins[0].allow_credentials", Reason: "never allows credentials"},
				{Field: "origins[1].pattern", Reason: "slash"},
				{Field: "allowed_methods[0]", Reason: "forbidden"},
				{Field: "allowed_request_headers[0]", Reason: "forbidden"},
				{Field: "exposed_response_headers[0]", Reason: "never expose"},
				{Field: "max_age", Reason: "between"},
				{Field: "hosts[0]", Reason: "empty"},
				{Field: "preflight_success_status", Reason: "200 or 204"},
				{Field: "preflight_failure_status", Reason: "400 and 499"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil || p == nil {
					t.Fatalf("Compile() = %v, %v; want a policy", p, err)
				}
				return
			}
			if p != nil {
				t.Errorf("Compile() returned a policy along with errors")
			}
			fes := FieldErrors(err)
			got := make([]wantFieldError, len(fes))
			for i, fe := range fes {
				got[i] = wantFieldError{Field: fe.Field}
				if i < len(tt.want) && strings.Contains(fe.Reason, tt.want[i].Reason) {
					got[i].Reason = tt.want[i].Reason
				} else {
					got[i].Reason = fe.Reason
				}
				if fe.Fix == "" {
					t.Errorf("%s: no Fix", fe.Field)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Compile() field errors mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if len(fes) > 0 && !strings.Contains(err.Error(), fes[0].Field) {
				t.Errorf("error text %q does not name %s", err, fes[0].Field)
			}
		})
	}
}

func manyHeaders(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = fmt.Sprintf("X-H%d", i)
	}
	return h
}

func manyHosts(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = fmt.Sprintf("h%d.example.com", i)
	}
	return h
}

func TestFieldErrors(t *testing.T) {
	fe1 := &FieldError{Field: "a", Reason: "r1", Fix: "f1"}
	fe2 := &FieldError{Field: "b", Reason: "r2"}
	tests := []struct {
		name string
		err  error
		want []*FieldError
	}{
		{name: "nil", err: nil},
		{name: "other error", err: errors.New("x")},
		{name: "single", err: fe1, want: []*FieldError{fe1}},
		{name: "joined", err: errors.Join(fe1, fe2), want: []*FieldError{fe1, fe2}},
		{name: "wrapped join", err: fmt.Errorf("store: %w", errors.Join(fe1, errors.New("x"), fe2)), want: []*FieldError{fe1, fe2}},
		{name: "nested joins", err: errors.Join(errors.Join(fe1), errors.Join(fe2)), want: []*FieldError{fe1, fe2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, FieldErrors(tt.err)); diff != "" {
				t.Errorf("FieldErrors(%v) mismatch (-want +got):\n%s", tt.err, diff)
			}
		})
	}
}

func TestFieldErrorError(t *testing.T) {
	fe := &FieldError{Field: "origins[0].pattern", Value: "https://a.example/", Reason: "pattern ends with a slash", Fix: `remove the trailing slash: write "https://a.example"`}
	want := `policy: origins[0].pattern: pattern ends with a slash (got "https://a.example/"); remove the trailing slash: write "https://a.example"`
	if got := fe.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestConfigNormalized(t *testing.T) {
	in := Config{
		Name:     "policies/acme",
		Revision: 7,
		Origins: []Origin{
			{Pattern: "HTTPS://App.Example.com:443", AllowCredentials: true, Description: "app"},
			{Pattern: "https://*.Bücher.example"},
			{Pattern: "http://[2001:DB8::1]:*"},
			{Pattern: "NULL"},
		},
		AllowedMethods:         []string{"get", "patch", "Put"},
		AllowedRequestHeaders:  []string{"Content-Type"},
		ExposedResponseHeaders: []string{"X-Request-Id"},
		Hosts:                  []string{"API.example.com", "*.bücher.example:8443"},
	}
	p := mustCompile(t, in)
	want := in
	want.Origins = []Origin{
		{Pattern: "https://app.example.com", AllowCredentials: true, Description: "app"},
		{Pattern: "https://*.xn--bcher-kva.example"},
		{Pattern: "http://[2001:db8::1]:*"},
		{Pattern: "null"},
	}
	want.AllowedMethods = []string{"GET", "patch", "PUT"}
	want.Hosts = []string{"api.example.com", "*.xn--bcher-kva.example:8443"}
	if diff := cmp.Diff(want, p.Config()); diff != "" {
		t.Errorf("Config() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.Hosts, p.Hosts()); diff != "" {
		t.Errorf("Hosts() mismatch (-want +got):\n%s", diff)
	}
	if p.Name() != "policies/acme" || p.Revision() != 7 || p.Mode() != ModeEnforce {
		t.Errorf("Name, Revision, Mode = %q, %d, %v", p.Name(), p.Revision(), p.Mode())
	}
	// The returned Config is a copy, and compiles to the same normalized form.
	c := p.Config()
	c.Origins[0].Pattern = "https://evil.example"
	if p.Config().Origins[0].Pattern != "https://app.example.com" {
		t.Errorf("Config() aliases the policy's state")
	}
	if diff := cmp.Diff(want, mustCompile(t, p.Config()).Config()); diff != "" {
		t.Errorf("recompiled Config() mismatch (-want +got):\n%s", diff)
	}
}

func TestNilPolicyAccessors(t *testing.T) {
	var p *Policy
	if p.Name() != "" || p.Revision() != 0 || p.Mode() != ModeEnforce || p.Hosts() != nil {
		t.Errorf("nil policy accessors = %q, %d, %v, %v", p.Name(), p.Revision(), p.Mode(), p.Hosts())
	}
	if diff := cmp.Diff(Config{}, p.Config()); diff != "" {
		t.Errorf("nil Config() mismatch (-want +got):\n%s", diff)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		got  fmt.Stringer
		want string
	}{
		{name: "reason allowed", got: ReasonAllowed, want: "ALLOWED"},
		{name: "reason origin not allowed", got: ReasonOriginNotAllowed, want: "ORIGIN_NOT_ALLOWED"},
		{name: "reason private network", got: ReasonPrivateNetworkNotAllowed, want: "PRIVATE_NETWORK_NOT_ALLOWED"},
		{name: "reason method malformed", got: ReasonMethodMalformed, want: "METHOD_MALFORMED"},
		{name: "reason unknown", got: Reason(99), want: "Reason(99)"},
		{name: "kind preflight", got: KindPreflight, want: "PREFLIGHT"},
		{name: "kind actual", got: KindActual, want: "ACTUAL"},
		{name: "kind not cors", got: KindNotCORS, want: "NOT_CORS"},
		{name: "kind unknown", got: Kind(9), want: "Kind(9)"},
		{name: "mode enforce", got: ModeEnforce, want: "ENFORCE"},
		{name: "mode report only", got: ModeReportOnly, want: "REPORT_ONLY"},
		{name: "mode disabled", got: ModeDisabled, want: "DISABLED"},
		{name: "mode unknown", got: Mode(7), want: "Mode(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
