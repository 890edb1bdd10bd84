package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store/boltstore"
)

func acme() *corsdv1.Policy {
	return &corsdv1.Policy{
		Description:    "acme API",
		Origins:        []*corsdv1.OriginRule{{Pattern: "https://app.example.com", AllowCredentials: true}},
		AllowedMethods: []string{"PUT"},
		Hosts:          []string{"api.example.com"},
	}
}

func TestCreatePolicy(t *testing.T) {
	e := newTokenEnv(t)
	e.create("existing", acme())
	tests := []struct {
		name       string
		req        *corsdv1.CreatePolicyRequest
		wantCode   codes.Code
		wantFields []string // InvalidArgument only
	}{
		{name: "valid", req: &corsdv1.CreatePolicyRequest{PolicyId: "fresh", Policy: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://a.example.com"}}}}, wantCode: codes.OK},
		{name: "empty policy", req: &corsdv1.CreatePolicyRequest{PolicyId: "empty", Policy: &corsdv1.Policy{}}, wantCode: codes.OK},
		{name: "taken", req: &corsdv1.CreatePolicyRequest{PolicyId: "existing", Policy: &corsdv1.Policy{}}, wantCode: codes.AlreadyExists},
		{name: "taken validate only", req: &corsdv1.CreatePolicyRequest{PolicyId: "existing", Policy: &corsdv1.Policy{}, ValidateOnly: true}, wantCode: codes.AlreadyExists},
		{name: "missing id", req: &corsdv1.CreatePolicyRequest{Policy: &corsdv1.Policy{}}, wantCode: codes.InvalidArgument, wantFields: []string{"policy_id"}},
		{name: "bad id", req: &corsdv1.CreatePolicyRequest{PolicyId: "Acme", Policy: &corsdv1.Policy{}}, wantCode: codes.InvalidArgument, wantFields: []string{"policy_id"}},
		{name: "id too long", req: &corsdv1.CreatePolicyRequest{PolicyId: "a" + strings.Repeat("b", 63), Policy: &corsdv1.Policy{}}, wantCode: codes.InvalidArgument, wantFields: []string{"policy_id"}},
		{name: "missing policy", req: &corsdv1.CreatePolicyRequest{PolicyId: "nopolicy"}, wantCode: codes.InvalidArgument, wantFields: []string{"policy"}},
		{
			name: "two problems, two violations",
			req: &corsdv1.CreatePolicyRequest{PolicyId: "bad", Policy: &corsdv1.Policy{
				Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}, {Pattern: "https://app.example.com/path"}},
				MaxAge:  durationpb.New(100000 * time.Second),
			}},
			wantCode:   codes.InvalidArgument,
			wantFields: []string{"policy.origins[1].pattern", "policy.max_age"},
		},
		{
			name:       "credentials with any origin",
			req:        &corsdv1.CreatePolicyRequest{PolicyId: "bad", Policy: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "*", AllowCredentials: true}}}},
			wantCode:   codes.InvalidArgument,
			wantFields: []string{"policy.origins[0].allow_credentials"},
		},
		{
			name:     "host governed by another policy",
			req:      &corsdv1.CreatePolicyRequest{PolicyId: "thief", Policy: &corsdv1.Policy{Hosts: []string{"other.example.com", "API.example.com"}}},
			wantCode: codes.AlreadyExists,
		},
		{
			name:     "host governed by another policy, validate only",
			req:      &corsdv1.CreatePolicyRequest{PolicyId: "thief", Policy: &corsdv1.Policy{Hosts: []string{"API.example.com"}}, ValidateOnly: true},
			wantCode: codes.AlreadyExists,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.policy.CreatePolicy(e.admin(), tt.req)
			if tt.wantFields != nil {
				wantViolations(t, err, tt.wantFields...)
			} else {
				wantCode(t, err, tt.wantCode)
			}
			if tt.wantCode != codes.OK && tt.req.GetPolicyId() != "existing" && validID(tt.req.GetPolicyId()) {
				_, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/" + tt.req.GetPolicyId()})
				wantCode(t, err, codes.NotFound) // nothing stored
			}
		})
	}
}

func TestCreatePolicyNormalizesAndSetsOutputFields(t *testing.T) {
	e := newTokenEnv(t)
	in := acme()
	in.Origins[0].Pattern = "HTTPS://App.Example.COM:443"
	in.Name = "policies/ignored"
	in.Revision = 99
	in.Etag = "client-etag"
	got := e.create("acme", in)
	if got.GetName() != "policies/acme" {
		t.Errorf("name = %q, want policies/acme", got.GetName())
	}
	if got.GetOrigins()[0].GetPattern() != "https://app.example.com" {
		t.Errorf("pattern = %q, want it normalized to https://app.example.com", got.GetOrigins()[0].GetPattern())
	}
	if got.GetRevision() == 99 || got.GetRevision() == 0 || got.GetEtag() == "client-etag" || got.GetEtag() == "" || got.GetCreateTime() == nil {
		t.Errorf("output-only fields not set by the store: revision=%d etag=%q create_time=%v", got.GetRevision(), got.GetEtag(), got.GetCreateTime())
	}
	get, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, get.GetPolicy(), protocmp.Transform()); diff != "" {
		t.Errorf("GetPolicy mismatch (-create +get):\n%s", diff)
	}
}

func TestCreatePolicyValidateOnly(t *testing.T) {
	e := newTokenEnv(t)
	resp, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: acme(), ValidateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPolicy().GetName() != "policies/acme" || len(resp.GetPolicy().GetOrigins()) != 1 {
		t.Errorf("validate_only returned %v", resp.GetPolicy())
	}
	_, err = e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	wantCode(t, err, codes.NotFound)
}

func TestGetPolicy(t *testing.T) {
	e := newTokenEnv(t)
	e.create("acme", acme())
	tests := []struct {
		name     string
		get      string
		wantCode codes.Code
	}{
		{name: "exists", get: "policies/acme", wantCode: codes.OK},
		{name: "absent", get: "policies/nope", wantCode: codes.NotFound},
		{name: "bare id", get: "acme", wantCode: codes.InvalidArgument},
		{name: "empty", get: "", wantCode: codes.InvalidArgument},
		{name: "wrong collection", get: "projects/acme", wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: tt.get})
			if tt.wantCode == codes.InvalidArgument {
				wantViolations(t, err, "name")
				return
			}
			wantCode(t, err, tt.wantCode)
		})
	}
}

func TestListPolicies(t *testing.T) {
	e := newTokenEnv(t)
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("p%d", i)
		e.create(id, &corsdv1.Policy{})
		want = append(want, "policies/"+id)
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		resp, err := e.policy.ListPolicies(as(readerToken), &corsdv1.ListPoliciesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPolicies()) > 2 {
			t.Errorf("page of %d policies, want at most 2", len(resp.GetPolicies()))
		}
		for _, p := range resp.GetPolicies() {
			got = append(got, p.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListPolicies names mismatch (-want +got):\n%s", diff)
	}

	all, err := e.policy.ListPolicies(as(readerToken), &corsdv1.ListPoliciesRequest{PageSize: 5000})
	if err != nil || len(all.GetPolicies()) != 5 {
		t.Errorf("ListPolicies(page_size=5000) = %d policies, %v; want 5 (clamped to the maximum)", len(all.GetPolicies()), err)
	}
	_, err = e.policy.ListPolicies(as(readerToken), &corsdv1.ListPoliciesRequest{PageSize: -1})
	wantViolations(t, err, "page_size")
	_, err = e.policy.ListPolicies(as(readerToken), &corsdv1.ListPoliciesRequest{PageToken: "garbage!"})
	wantCode(t, err, codes.InvalidArgument)
}

func TestUpdatePolicyMask(t *testing.T) {
	base := acme()
	base.ExposedResponseHeaders = []string{"X-Total"}
	base.MaxAge = durationpb.New(time.Minute)
	tests := []struct {
		name   string
		patch  *corsdv1.Policy
		paths  []string
		want   func(p *corsdv1.Policy) // edits a copy of base into the expected result
		fields []string                // expected violations; nil for success
	}{
		{
			name:  "one field",
			patch: &corsdv1.Policy{Description: "new", AllowedMethods: []string{"DELETE"}},
			paths: []string{"description"},
			want:  func(p *corsdv1.Policy) { p.Description = "new" },
		},
		{
			name:  "clear a field the patch leaves unset",
			patch: &corsdv1.Policy{},
			paths: []string{"max_age", "exposed_response_headers"},
			want:  func(p *corsdv1.Policy) { p.MaxAge = nil; p.ExposedResponseHeaders = nil },
		},
		{
			name:  "empty mask replaces every writable field",
			patch: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://b.example.com"}}},
			want: func(p *corsdv1.Policy) {
				*p = corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://b.example.com"}}, Mode: corsdv1.Mode_MODE_ENFORCE}
			},
		},
		{
			name:  "star replaces every writable field",
			patch: &corsdv1.Policy{Description: "only"},
			paths: []string{"*"},
			want:  func(p *corsdv1.Policy) { *p = corsdv1.Policy{Description: "only", Mode: corsdv1.Mode_MODE_ENFORCE} },
		},
		{
			name:  "patterns are normalized",
			patch: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "HTTPS://B.example.com"}}},
			paths: []string{"origins"},
			want:  func(p *corsdv1.Policy) { p.Origins = []*corsdv1.OriginRule{{Pattern: "https://b.example.com"}} },
		},
		{name: "unknown path", patch: &corsdv1.Policy{}, paths: []string{"description", "colour"}, fields: []string{"update_mask.paths[1]"}},
		{name: "output-only path", patch: &corsdv1.Policy{}, paths: []string{"etag"}, fields: []string{"update_mask.paths[0]"}},
		{name: "name path", patch: &corsdv1.Policy{}, paths: []string{"name"}, fields: []string{"update_mask.paths[0]"}},
		{name: "nested path", patch: &corsdv1.Policy{}, paths: []string{"origins.pattern"}, fields: []string{"update_mask.paths[0]"}},
		{name: "camelCase path", patch: &corsdv1.Policy{}, paths: []string{"maxAge"}, fields: []string{"update_mask.paths[0]"}},
		{
			name:   "invalid result",
			patch:  &corsdv1.Policy{AllowedMethods: []string{"CONNECT"}, Hosts: []string{"a b"}},
			paths:  []string{"allowed_methods", "hosts"},
			fields: []string{"policy.allowed_methods[0]", "policy.hosts[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTokenEnv(t)
			before := e.create("acme", base)
			patch := tt.patch
			patch.Name = "policies/acme"
			resp, err := e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: patch, UpdateMask: &fieldmaskpb.FieldMask{Paths: tt.paths}})
			if tt.fields != nil {
				wantViolations(t, err, tt.fields...)
				after, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(before, after.GetPolicy(), protocmp.Transform()); diff != "" {
					t.Errorf("a refused update changed the policy (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdatePolicy: %v", err)
			}
			want := cloneWritable(before)
			tt.want(want)
			if diff := cmp.Diff(want, cloneWritable(resp.GetPolicy()), protocmp.Transform()); diff != "" {
				t.Errorf("UpdatePolicy(%v) mismatch (-want +got):\n%s", tt.paths, diff)
			}
			if resp.GetPolicy().GetRevision() <= before.GetRevision() || resp.GetPolicy().GetEtag() == before.GetEtag() {
				t.Errorf("revision/etag not advanced: %d %q -> %d %q", before.GetRevision(), before.GetEtag(), resp.GetPolicy().GetRevision(), resp.GetPolicy().GetEtag())
			}
		})
	}
}

// cloneWritable returns p's writable fields only.
func cloneWritable(p *corsdv1.Policy) *corsdv1.Policy {
	out := &corsdv1.Policy{}
	copyFields(out, cloneProto(p), writableFields())
	return out
}

func TestUpdatePolicyEtagAndValidateOnly(t *testing.T) {
	e := newTokenEnv(t)
	v1 := e.create("acme", acme())
	mask := &fieldmaskpb.FieldMask{Paths: []string{"description"}}

	// validate_only with a current etag: nothing stored.
	resp, err := e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "policies/acme", Description: "dry", Etag: v1.GetEtag()}, UpdateMask: mask, ValidateOnly: true})
	if err != nil || resp.GetPolicy().GetDescription() != "dry" {
		t.Fatalf("validate_only update = %v, %v", resp.GetPolicy(), err)
	}
	got, _ := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if got.GetPolicy().GetDescription() != v1.GetDescription() || got.GetPolicy().GetRevision() != v1.GetRevision() {
		t.Errorf("validate_only stored a change: %v", got.GetPolicy())
	}

	// A conditional update with the current etag succeeds...
	v2, err := e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "policies/acme", Description: "v2", Etag: v1.GetEtag()}, UpdateMask: mask})
	if err != nil {
		t.Fatalf("update with current etag: %v", err)
	}
	// ...then the old etag is stale: Aborted, also with validate_only.
	for _, validateOnly := range []bool{false, true} {
		_, err = e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "policies/acme", Description: "v3", Etag: v1.GetEtag()}, UpdateMask: mask, ValidateOnly: validateOnly})
		wantCode(t, err, codes.Aborted)
	}
	// No etag: unconditional.
	if _, err := e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "policies/acme", Description: "v3"}, UpdateMask: mask}); err != nil {
		t.Errorf("unconditional update: %v", err)
	}
	_, err = e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "policies/nope"}, UpdateMask: mask})
	wantCode(t, err, codes.NotFound)
	_, err = e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{})
	wantViolations(t, err, "policy")
	_, err = e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{Policy: &corsdv1.Policy{Name: "acme"}})
	wantViolations(t, err, "policy.name")
	_ = v2
}

func TestDeletePolicy(t *testing.T) {
	e := newTokenEnv(t)
	v1 := e.create("acme", acme())
	_, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/acme", Etag: "stale"})
	wantCode(t, err, codes.Aborted)
	resp, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/acme", Etag: v1.GetEtag()})
	if err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	if resp.GetRevision() <= v1.GetRevision() {
		t.Errorf("delete revision %d, want > %d", resp.GetRevision(), v1.GetRevision())
	}
	_, err = e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/acme"})
	wantCode(t, err, codes.NotFound)
	_, err = e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/Acme"})
	wantViolations(t, err, "name")
}

func TestAddOrigin(t *testing.T) {
	e := newTokenEnv(t)
	v1 := e.create("acme", acme())

	// A new pattern is appended.
	resp, err := e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "https://*.example.org", Description: "partners"}})
	if err != nil {
		t.Fatalf("AddOrigin: %v", err)
	}
	wantPatterns(t, resp.GetPolicy(), "https://app.example.com", "https://*.example.org")

	// A new pattern is stored and answered normalized.
	resp, err = e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "HTTPS://New.Example.com:443"}, Etag: resp.GetPolicy().GetEtag()})
	if err != nil {
		t.Fatalf("AddOrigin: %v", err)
	}
	wantPatterns(t, resp.GetPolicy(), "https://app.example.com", "https://*.example.org", "https://new.example.com")

	// A pattern that normalizes to a stored rule is AlreadyExists naming
	// that rule, and the rule keeps its credentials: changing them is an
	// explicit update.
	exists := []struct {
		name, pattern, stored string
		creds                 bool
	}{
		{name: "same spelling", pattern: "https://app.example.com", stored: `origins[0] "https://app.example.com"`},
		{name: "upper case and default port", pattern: "HTTPS://APP.Example.com:443", stored: `origins[0] "https://app.example.com"`},
		{name: "dropping credentials", pattern: "https://APP.example.com", stored: `origins[0] "https://app.example.com"`},
		{name: "same credentials", pattern: "https://app.example.com:443", creds: true, stored: `origins[0] "https://app.example.com"`},
		{name: "wildcard", pattern: "HTTPS://*.Example.ORG", stored: `origins[1] "https://*.example.org"`},
	}
	for _, tt := range exists {
		t.Run("exists/"+tt.name, func(t *testing.T) {
			_, err := e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: tt.pattern, AllowCredentials: tt.creds, Description: "replaced"}})
			st := wantCode(t, err, codes.AlreadyExists)
			if !strings.Contains(st.Message(), tt.stored) || !strings.Contains(st.Message(), "UpdatePolicy") {
				t.Errorf("message %q does not name %s and the way to change it", st.Message(), tt.stored)
			}
		})
	}
	got, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.GetPolicy().GetOrigins()[0]; !r.GetAllowCredentials() || r.GetDescription() != "" {
		t.Errorf("stored rule changed by a refused AddOrigin: %v", r)
	}
	if got.GetPolicy().GetEtag() != resp.GetPolicy().GetEtag() {
		t.Errorf("a refused AddOrigin wrote the policy: etag %s, want %s", got.GetPolicy().GetEtag(), resp.GetPolicy().GetEtag())
	}

	tests := []struct {
		name   string
		req    *corsdv1.AddOriginRequest
		code   codes.Code
		fields []string
	}{
		{name: "stale etag", req: &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "https://c.example.com"}, Etag: v1.GetEtag()}, code: codes.Aborted},
		{name: "absent policy", req: &corsdv1.AddOriginRequest{Policy: "policies/nope", Origin: &corsdv1.OriginRule{Pattern: "https://c.example.com"}}, code: codes.NotFound},
		{name: "bad pattern", req: &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "https://c.example.com/path"}}, code: codes.InvalidArgument, fields: []string{"origin.pattern"}},
		{name: "insecure credentials", req: &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: "http://c.example.com", AllowCredentials: true}}, code: codes.InvalidArgument, fields: []string{"origin.allow_credentials"}},
		{name: "missing origin", req: &corsdv1.AddOriginRequest{Policy: "policies/acme"}, code: codes.InvalidArgument, fields: []string{"origin"}},
		{name: "empty pattern", req: &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{}}, code: codes.InvalidArgument, fields: []string{"origin.pattern"}},
		{name: "bad name", req: &corsdv1.AddOriginRequest{Policy: "acme", Origin: &corsdv1.OriginRule{Pattern: "https://c.example.com"}}, code: codes.InvalidArgument, fields: []string{"policy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.policy.AddOrigin(e.admin(), tt.req)
			if tt.fields != nil {
				wantViolations(t, err, tt.fields...)
				return
			}
			wantCode(t, err, tt.code)
		})
	}
	got, _ = e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	wantPatterns(t, got.GetPolicy(), "https://app.example.com", "https://*.example.org", "https://new.example.com")
}

func TestRemoveOrigin(t *testing.T) {
	e := newTokenEnv(t)
	p := acme()
	p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://b.example.com"})
	v1 := e.create("acme", p)

	_, err := e.policy.RemoveOrigin(e.admin(), &corsdv1.RemoveOriginRequest{Policy: "policies/acme", Pattern: "https://absent.example.com"})
	wantCode(t, err, codes.NotFound)
	_, err = e.policy.RemoveOrigin(e.admin(), &corsdv1.RemoveOriginRequest{Policy: "policies/acme", Pattern: "https://b.example.com/x"})
	wantViolations(t, err, "pattern")
	_, err = e.policy.RemoveOrigin(e.admin(), &corsdv1.RemoveOriginRequest{Policy: "policies/acme", Pattern: ""})
	wantViolations(t, err, "pattern")
	_, err = e.policy.RemoveOrigin(e.admin(), &corsdv1.RemoveOriginRequest{Policy: "policies/acme", Pattern: "https://b.example.com", Etag: "stale"})
	wantCode(t, err, codes.Aborted)

	// A non-canonical spelling finds the rule.
	resp, err := e.policy.RemoveOrigin(e.admin(), &corsdv1.RemoveOriginRequest{Policy: "policies/acme", Pattern: "HTTPS://B.EXAMPLE.COM:443", Etag: v1.GetEtag()})
	if err != nil {
		t.Fatalf("RemoveOrigin: %v", err)
	}
	wantPatterns(t, resp.GetPolicy(), "https://app.example.com")
}

func wantPatterns(t *testing.T, p *corsdv1.Policy, want ...string) {
	t.Helper()
	var got []string
	for _, o := range p.GetOrigins() {
		got = append(got, o.GetPattern())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patterns mismatch (-want +got):\n%s", diff)
	}
}

func TestListChanges(t *testing.T) {
	e := newTokenEnv(t)
	e.create("a", &corsdv1.Policy{})
	e.create("b", &corsdv1.Policy{})
	if _, err := e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/a", Origin: &corsdv1.OriginRule{Pattern: "https://x.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/b"}); err != nil {
		t.Fatal(err)
	}

	type change struct {
		Name  string
		Kind  corsdv1.ChangeKind
		Actor string
	}
	collect := func(t *testing.T, req *corsdv1.ListChangesRequest) []change {
		t.Helper()
		var out []change
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("too many pages")
			}
			resp, err := e.policy.ListChanges(as(readerToken), req)
			if err != nil {
				t.Fatalf("ListChanges: %v", err)
			}
			if req.GetPageSize() > 0 && len(resp.GetChanges()) > int(req.GetPageSize()) {
				t.Errorf("page of %d, want at most %d", len(resp.GetChanges()), req.GetPageSize())
			}
			for _, c := range resp.GetChanges() {
				out = append(out, change{Name: c.GetName(), Kind: c.GetKind(), Actor: c.GetActor()})
			}
			if resp.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	all := []change{
		{"policies/a", corsdv1.ChangeKind_CHANGE_KIND_CREATE, "admin"},
		{"policies/b", corsdv1.ChangeKind_CHANGE_KIND_CREATE, "admin"},
		{"policies/a", corsdv1.ChangeKind_CHANGE_KIND_UPDATE, "admin"},
		{"policies/b", corsdv1.ChangeKind_CHANGE_KIND_DELETE, "admin"},
	}
	tests := []struct {
		name string
		req  *corsdv1.ListChangesRequest
		want []change
	}{
		{name: "all", req: &corsdv1.ListChangesRequest{}, want: all},
		{name: "pages of one", req: &corsdv1.ListChangesRequest{PageSize: 1}, want: all},
		{name: "pages of three", req: &corsdv1.ListChangesRequest{PageSize: 3}, want: all},
		{name: "after revision 2", req: &corsdv1.ListChangesRequest{StartRevision: 2}, want: all[2:]},
		{name: "one policy", req: &corsdv1.ListChangesRequest{Policy: "policies/b", PageSize: 1}, want: []change{all[1], all[3]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, collect(t, tt.req)); diff != "" {
				t.Errorf("ListChanges(%v) mismatch (-want +got):\n%s", tt.req, diff)
			}
		})
	}

	first, err := e.policy.ListChanges(as(readerToken), &corsdv1.ListChangesRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	errTests := []struct {
		name   string
		req    *corsdv1.ListChangesRequest
		fields []string
	}{
		{name: "negative start", req: &corsdv1.ListChangesRequest{StartRevision: -1}, fields: []string{"start_revision"}},
		{name: "negative page size", req: &corsdv1.ListChangesRequest{PageSize: -1}, fields: []string{"page_size"}},
		{name: "bad policy", req: &corsdv1.ListChangesRequest{Policy: "b"}, fields: []string{"policy"}},
		{name: "garbage token", req: &corsdv1.ListChangesRequest{PageToken: "%%%"}, fields: []string{"page_token"}},
		{name: "token of another filter", req: &corsdv1.ListChangesRequest{PageToken: first.GetNextPageToken(), Policy: "policies/a"}, fields: []string{"page_token"}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.policy.ListChanges(as(readerToken), tt.req)
			wantViolations(t, err, tt.fields...)
		})
	}
}

func TestListChangesCompacted(t *testing.T) {
	e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, storeOpts: []boltstore.Option{boltstore.WithRetention(2, 0)}})
	for i := range 5 {
		e.create(fmt.Sprintf("p%d", i), &corsdv1.Policy{})
	}
	_, err := e.policy.ListChanges(as(readerToken), &corsdv1.ListChangesRequest{StartRevision: 1})
	st := wantCode(t, err, codes.OutOfRange)
	if !strings.Contains(st.Message(), "revision 0") {
		t.Errorf("OutOfRange message %q does not tell the client to start again from 0", st.Message())
	}
	resp, err := e.policy.ListChanges(as(readerToken), &corsdv1.ListChangesRequest{})
	if err != nil || len(resp.GetChanges()) != 2 {
		t.Errorf("ListChanges(0) = %d changes, %v; want the 2 retained", len(resp.GetChanges()), err)
	}
}
