package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"sigs.k8s.io/yaml"

	"github.com/corsd/corsd/internal/policypb"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// FuzzCheckReports: ReportDecisions validation never panics, and what it
// accepts stays within the limits that bound the metrics it feeds.
func FuzzCheckReports(f *testing.F) {
	f.Add("svc", "policies/acme", "https://evil.example", "", int64(1), int32(2), int32(3), int64(1), uint8(1))
	f.Add("svc\n", "policies/", strings.Repeat("o", 2000), "d", int64(0), int32(9), int32(-1), int64(-1), uint8(3))
	f.Add("", "acme", "", "", int64(1_000_000_001), int32(0), int32(0), int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, reporter, pol, origin, detail string, count int64, kind, reason int32, rev int64, n uint8) {
		req := &corsdv1.ReportDecisionsRequest{Reporter: reporter}
		for range n % 4 {
			req.Reports = append(req.Reports, &corsdv1.DecisionReport{
				Policy: pol, PolicyRevision: rev, Kind: corsdv1.DecisionKind(kind), Reason: corsdv1.Reason(reason),
				Origin: origin, Detail: detail, Count: count,
			})
		}
		err := checkReports(req)
		if err != nil {
			var bre *badRequestError
			if !errors.As(err, &bre) || len(bre.violations) == 0 {
				t.Fatalf("checkReports() = %v, want a badRequestError", err)
			}
			return
		}
		if !policypb.ValidReporter(reporter) {
			t.Fatalf("accepted reporter %q", reporter)
		}
		for _, r := range req.GetReports() {
			if r.GetCount() < 1 || r.GetCount() > policypb.MaxReportCount || checkName("policy", r.GetPolicy()) != nil || r.GetPolicyRevision() < 0 {
				t.Fatalf("accepted report %v", r)
			}
		}
	})
}

// FuzzMaskFields: update-mask handling never panics; what it accepts are
// writable fields of Policy, each once.
func FuzzMaskFields(f *testing.F) {
	for _, seed := range []string{"", "*", "origins,max_age", "name", "etag,*", "origins.pattern", "origins,origins", "nope", ",", "*,*", strings.Repeat("origins,", 70)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, paths string) {
		var m *fieldmaskpb.FieldMask
		if paths != "" {
			m = &fieldmaskpb.FieldMask{Paths: strings.Split(paths, ",")}
		}
		fds, err := maskFields(m)
		if err != nil {
			var bre *badRequestError
			if !errors.As(err, &bre) || len(bre.violations) == 0 || len(bre.violations) > min(len(m.GetPaths()), maxMaskPaths) {
				t.Fatalf("maskFields(%q) = %v", paths, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, fd := range fds {
			if outputOnly[fd.Name()] || seen[string(fd.Name())] {
				t.Fatalf("maskFields(%q) returned %s", paths, fd.Name())
			}
			seen[string(fd.Name())] = true
		}
		if len(fds) == 0 {
			t.Fatalf("maskFields(%q) accepted no field", paths)
		}
	})
}

// FuzzBearerToken: the authorization header is parsed without panic; an
// accepted token is non-empty, trimmed, and found in the header; a header
// that is not the configured token never authorizes.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []string{"Bearer abc", "bearer  x ", "Basic abc", "Bearer", "", " Bearer\tadmin-token-0123456789", "Bearer admin-token-0123456789"} {
		f.Add(seed)
	}
	a, err := newAuthenticator(testTokens, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
		tok, err := bearerToken(ctx)
		if err == nil && (tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(header, tok)) {
			t.Fatalf("bearerToken(%q) = %q", header, tok)
		}
		_, aerr := a.authorize(ctx, corsdv1.PolicyService_GetPolicy_FullMethodName)
		if aerr == nil {
			ok := false
			for _, tt := range testTokens {
				ok = ok || tok == tt.Token
			}
			if !ok {
				t.Fatalf("header %q authorized", header)
			}
		}
	})
}

// FuzzParseTokens: the tokens file parser never panics; what it accepts
// is valid, and reads back the same from its own JSON.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("- name: ci\n  token: 0123456789abcdef0123\n  scopes: [read, write]\n"))
	f.Add([]byte(`[{"name":"e","token":"fedcba9876543210fedc","scopes":["check"]}]`))
	f.Add([]byte("- name: a\n  token: short\n  scopes: []\n- name: a\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("- &a {name: x}\n- *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tokens, err := ParseTokens(data)
		if err != nil {
			return
		}
		if err := validateTokens(tokens); err != nil {
			t.Fatalf("ParseTokens accepted invalid tokens: %v", err)
		}
		js, err := json.Marshal(tokens)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseTokens(js)
		if err != nil {
			t.Fatalf("ParseTokens(own JSON %s) = %v", js, err)
		}
		y1, _ := yaml.Marshal(tokens)
		y2, _ := yaml.Marshal(again)
		if string(y1) != string(y2) {
			t.Fatalf("round trip changed the tokens:\n%s\n%s", y1, y2)
		}
	})
}
