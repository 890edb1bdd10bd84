package policypb

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// full sets every field of the message.
func full() *corsdv1.Policy {
	return &corsdv1.Policy{
		Name:        "policies/acme",
		Description: "Acme API",
		Origins: []*corsdv1.OriginRule{
			{Pattern: "https://app.acme.example", AllowCredentials: true, Description: "the app"},
			{Pattern: "https://*.github.io", AllowCredentials: true, DangerouslyAllowCredentialsUnderPublicSuffix: true},
			{Pattern: "http://intranet.acme.example", AllowCredentials: true, DangerouslyAllowInsecureCredentials: true},
		},
		AllowedMethods:         []string{"GET", "PUT"},
		AllowedRequestHeaders:  []string{"Content-Type", "X-Request-Id"},
		ExposedResponseHeaders: []string{"X-Total"},
		MaxAge:                 durationpb.New(10 * time.Minute),
		AllowPrivateNetwork:    true,
		Hosts:                  []string{"api.acme.example", "*.api.acme.example"},
		Mode:                   corsdv1.Mode_MODE_REPORT_ONLY,
		CrossOriginProtection:  true,
		PreflightSuccessStatus: 200,
		PreflightFailureStatus: 401,
		Revision:               42,
		Etag:                   "42",
		CreateTime:             timestamppb.New(time.Unix(1000, 0)),
		UpdateTime:             timestamppb.New(time.Unix(2000, 0)),
	}
}

func fullConfig() policy.Config {
	return policy.Config{
		Name:     "policies/acme",
		Revision: 42,
		Origins: []policy.Origin{
			{Pattern: "https://app.acme.example", AllowCredentials: true, Description: "the app"},
			{Pattern: "https://*.github.io", AllowCredentials: true, DangerouslyAllowCredentialsUnderPublicSuffix: true},
			{Pattern: "http://intranet.acme.example", AllowCredentials: true, DangerouslyAllowInsecureCredentials: true},
		},
		AllowedMethods:         []string{"GET", "PUT"},
		AllowedRequestHeaders:  []string{"Content-Type", "X-Request-Id"},
		ExposedResponseHeaders: []string{"X-Total"},
		MaxAge:                 10 * time.Minute,
		MaxAgeSet:              true,
		AllowPrivateNetwork:    true,
		Hosts:                  []string{"api.acme.example", "*.api.acme.example"},
		Mode:                   policy.ModeReportOnly,
		CrossOriginProtection:  true,
		PreflightSuccessStatus: 200,
		PreflightFailureStatus: 401,
	}
}

func TestToConfig(t *testing.T) {
	tests := []struct {
		name string
		in   *corsdv1.Policy
		want policy.Config
	}{
		{name: "every field", in: full(), want: fullConfig()},
		{name: "nil", in: nil, want: policy.Config{}},
		{name: "empty", in: &corsdv1.Policy{}, want: policy.Config{}},
		{name: "mode unspecified enforces", in: &corsdv1.Policy{Mode: corsdv1.Mode_MODE_UNSPECIFIED}, want: policy.Config{Mode: policy.ModeEnforce}},
		{name: "mode enforce", in: &corsdv1.Policy{Mode: corsdv1.Mode_MODE_ENFORCE}, want: policy.Config{Mode: policy.ModeEnforce}},
		{name: "mode disabled", in: &corsdv1.Policy{Mode: corsdv1.Mode_MODE_DISABLED}, want: policy.Config{Mode: policy.ModeDisabled}},
		{name: "unknown mode", in: &corsdv1.Policy{Mode: 7}, want: policy.Config{Mode: policy.Mode(7)}},
		{name: "negative mode", in: &corsdv1.Policy{Mode: -1}, want: policy.Config{Mode: modeUnknown}},
		{name: "huge mode", in: &corsdv1.Policy{Mode: 1 << 20}, want: policy.Config{Mode: modeUnknown}},
		{name: "max_age zero is set", in: &corsdv1.Policy{MaxAge: &durationpb.Duration{}}, want: policy.Config{MaxAgeSet: true}},
		{name: "max_age saturates", in: &corsdv1.Policy{MaxAge: &durationpb.Duration{Seconds: math.MaxInt64}}, want: policy.Config{MaxAge: math.MaxInt64, MaxAgeSet: true}},
		{name: "max_age negative", in: &corsdv1.Policy{MaxAge: &durationpb.Duration{Seconds: -5}}, want: policy.Config{MaxAge: -5 * time.Second, MaxAgeSet: true}},
		{name: "empty lists stay empty", in: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{}, Hosts: []string{}}, want: policy.Config{Origins: []policy.Origin{}, Hosts: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToConfig(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ToConfig() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToConfigDoesNotAlias(t *testing.T) {
	p := full()
	c := ToConfig(p)
	c.AllowedMethods[0], c.Hosts[0] = "CHANGED", "changed.example"
	if p.GetAllowedMethods()[0] != "GET" || p.GetHosts()[0] != "api.acme.example" {
		t.Error("changing the Config changed the message")
	}
}

func TestFromConfig(t *testing.T) {
	want := full()
	// FromConfig carries neither the description nor etag and times.
	want.Description, want.Etag, want.CreateTime, want.UpdateTime = "", "", nil, nil
	if diff := cmp.Diff(want, FromConfig(fullConfig()), protocmp.Transform()); diff != "" {
		t.Errorf("FromConfig() mismatch (-want +got):\n%s", diff)
	}
	if got := FromConfig(policy.Config{}); got.GetMode() != corsdv1.Mode_MODE_ENFORCE || got.GetMaxAge() != nil {
		t.Errorf("FromConfig(zero) = %v, want MODE_ENFORCE and no max_age", got)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    policy.Config
	}{
		{name: "full", c: fullConfig()},
		{name: "zero", c: policy.Config{}},
		{name: "disabled, max_age 0", c: policy.Config{Mode: policy.ModeDisabled, MaxAgeSet: true}},
		{name: "unknown mode", c: policy.Config{Mode: policy.Mode(9)}},
		{name: "status out of int32", c: policy.Config{PreflightFailureStatus: 70000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.c, ToConfig(FromConfig(tt.c))); diff != "" {
				t.Errorf("ToConfig(FromConfig(c)) mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("message", func(t *testing.T) {
		p := full()
		got := FromConfig(ToConfig(p))
		p.Description, p.Etag, p.CreateTime, p.UpdateTime = "", "", nil, nil
		if diff := cmp.Diff(p, got, protocmp.Transform()); diff != "" {
			t.Errorf("FromConfig(ToConfig(p)) mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestNormalize(t *testing.T) {
	in := &corsdv1.Policy{
		Name:        "policies/acme",
		Description: "keeps its description",
		Origins: []*corsdv1.OriginRule{
			{Pattern: "HTTPS://App.Acme.Example:443", AllowCredentials: true, Description: "app"},
			{Pattern: "http://LOCALHOST:*"},
			{Pattern: "https://bücher.example"},
		},
		AllowedMethods: []string{"get", "PATCH"},
		Hosts:          []string{"API.Acme.Example"},
		MaxAge:         durationpb.New(time.Minute),
		Revision:       7,
		Etag:           "7",
		CreateTime:     timestamppb.New(time.Unix(1, 0)),
	}
	orig := proto.Clone(in)
	got, compiled, err := Normalize(in)
	if err != nil {
		t.Fatalf("Normalize() = %v", err)
	}
	if !proto.Equal(in, orig) {
		t.Error("Normalize modified its argument")
	}
	want := proto.Clone(in).(*corsdv1.Policy)
	want.Origins = []*corsdv1.OriginRule{
		{Pattern: "https://app.acme.example", AllowCredentials: true, Description: "app"},
		{Pattern: "http://localhost:*"},
		{Pattern: "https://xn--bcher-kva.example"},
	}
	want.AllowedMethods = []string{"GET", "PATCH"}
	want.Hosts = []string{"api.acme.example"}
	want.Mode = corsdv1.Mode_MODE_ENFORCE
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Normalize() mismatch (-want +got):\n%s", diff)
	}
	if compiled.Name() != "policies/acme" || compiled.Revision() != 7 {
		t.Errorf("compiled policy = %q revision %d", compiled.Name(), compiled.Revision())
	}
	// Normalizing is idempotent.
	again, _, err := Normalize(got)
	if err != nil {
		t.Fatalf("Normalize(normalized) = %v", err)
	}
	if diff := cmp.Diff(got, again, protocmp.Transform()); diff != "" {
		t.Errorf("Normalize is not idempotent (-once +twice):\n%s", diff)
	}
	// The compiled policy decides.
	d := compiled.Check(policy.Request{Method: "GET", Origin: "https://app.acme.example"})
	if !d.Allowed {
		t.Errorf("Check(app origin) = %+v, want allowed", d)
	}
}

func TestNormalizeErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     *corsdv1.Policy
		fields []string
	}{
		{
			name: "every problem at once",
			in: &corsdv1.Policy{
				Name: "policies/bad",
				Origins: []*corsdv1.OriginRule{
					{Pattern: "https://ok.example"},
					{Pattern: "https://a.example/path"},
					{Pattern: "*", AllowCredentials: true},
				},
				AllowedMethods: []string{"CONNECT"},
				MaxAge:         durationpb.New(48 * time.Hour),
			},
			fields: []string{"origins[1].pattern", "origins[2].allow_credentials", "allowed_methods[0]", "max_age"},
		},
		{name: "unknown mode", in: &corsdv1.Policy{Mode: 5}, fields: []string{"mode"}},
		{name: "negative mode", in: &corsdv1.Policy{Mode: -3}, fields: []string{"mode"}},
		{name: "invalid duration", in: &corsdv1.Policy{MaxAge: &durationpb.Duration{Seconds: 1, Nanos: 2_000_000_000}}, fields: []string{"max_age"}},
		{name: "invalid duration and more", in: &corsdv1.Policy{MaxAge: &durationpb.Duration{Seconds: 1, Nanos: -1}, Hosts: []string{"a b"}}, fields: []string{"max_age", "hosts[0]"}},
		{name: "statuses", in: &corsdv1.Policy{PreflightSuccessStatus: 201, PreflightFailureStatus: 500}, fields: []string{"preflight_success_status", "preflight_failure_status"}},
		{name: "description too long", in: &corsdv1.Policy{Description: strings.Repeat("é", 1<<19)}, fields: []string{"description"}},
		{name: "description too long and more", in: &corsdv1.Policy{Description: strings.Repeat("x", policy.MaxDescriptionLength+1), Mode: 5}, fields: []string{"description", "mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, compiled, err := Normalize(tt.in)
			if err == nil || got != nil || compiled != nil {
				t.Fatalf("Normalize() = %v, %v, %v; want an error only", got, compiled, err)
			}
			var fields []string
			for _, fe := range policy.FieldErrors(err) {
				fields = append(fields, fe.Field)
				if fe.Reason == "" {
					t.Errorf("field error %q has no reason", fe.Field)
				}
			}
			if diff := cmp.Diff(tt.fields, fields); diff != "" {
				t.Errorf("field errors mismatch (-want +got):\n%s\n%v", diff, err)
			}
			if _, err2 := Compile(tt.in); err2 == nil {
				t.Error("Compile() accepted what Normalize refused")
			}
		})
	}
}

// FuzzNormalize checks that Normalize never panics, and that a normalized
// policy normalizes to itself and keeps its meaning.
func FuzzNormalize(f *testing.F) {
	f.Add("https://App.Example:443", "get", "API.example.com", int32(2), int64(600), false)
	f.Add("http://localhost:*", "PATCH", "*.api.example.com", int32(0), int64(-1), true)
	f.Add("null", "*", "", int32(9), int64(90000), false)
	f.Add("https://*.example.com", "post", "xn--bcher-kva.example", int32(3), int64(0), true)
	f.Fuzz(func(t *testing.T, pattern, method, host string, mode int32, maxAge int64, creds bool) {
		if !utf8.ValidString(pattern + method + host) {
			t.Skip("proto3 strings are valid UTF-8: the API never delivers these")
		}
		p := &corsdv1.Policy{
			Name:    "policies/fuzz",
			Origins: []*corsdv1.OriginRule{{Pattern: pattern, AllowCredentials: creds}},
			Mode:    corsdv1.Mode(mode),
		}
		if method != "" {
			p.AllowedMethods = []string{method}
		}
		if host != "" {
			p.Hosts = []string{host}
		}
		if maxAge >= 0 {
			p.MaxAge = &durationpb.Duration{Seconds: maxAge}
		}
		n, compiled, err := Normalize(p)
		if err != nil {
			if len(policy.FieldErrors(err)) == 0 {
				t.Fatalf("Normalize() error without field errors: %v", err)
			}
			return
		}
		again, compiled2, err := Normalize(n)
		if err != nil {
			t.Fatalf("Normalize(normalized %v) = %v", n, err)
		}
		if !proto.Equal(n, again) {
			t.Fatalf("not idempotent: %v then %v", n, again)
		}
		req := policy.Request{Method: "GET", Origin: n.GetOrigins()[0].GetPattern()}
		if d1, d2 := compiled.Check(req), compiled2.Check(req); d1.Allowed != d2.Allowed || d1.Reason != d2.Reason {
			t.Fatalf("normalizing changed a decision: %+v vs %+v", d1, d2)
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	p := full()
	for i := range 10 {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://app" + string(rune('a'+i)) + ".acme.example"})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
