package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// bigPolicy has n origins, each described in descLen bytes: within the
// documented limits. The case was 20,000 origins of 60 bytes (1.2
// MB a policy); fewer origins with longer descriptions make as many bytes
// for a tenth of the compile time.
func bigPolicy(id string, n, descLen int) *corsdv1.Policy {
	p := &corsdv1.Policy{Name: "policies/" + id}
	for i := range n {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{
			Pattern:     fmt.Sprintf("https://app-%05d.%s.customers.example.com", i, id),
			Description: fmt.Sprintf("tenant %05d ", i) + strings.Repeat("d", descLen),
		})
	}
	return p
}

// TestListBoundedInBytes: six policies of 20,000 origins made ListPolicies
// answer 6.9 MB and ListChanges more (here six of 2,000 origins, 1.2 MB
// each), past what a default client accepts,
// so `corsctl policies list`, `export` and `changes` failed. Pages stop
// under the client's limit and next_page_token continues.
func TestListBoundedInBytes(t *testing.T) {
	e := newTokenEnv(t)
	const n = 6
	for i := range n {
		// Straight into the store: compiling 20,000 origins six times
		// through the API would only slow the test down.
		if _, err := e.store.Create(e.admin(), bigPolicy(fmt.Sprintf("big-%d", i), 2000, 560)); err != nil {
			t.Fatal(err)
		}
	}

	var names []string
	token, pages := "", 0
	for {
		resp, err := e.policy.ListPolicies(e.admin(), &corsdv1.ListPoliciesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatalf("ListPolicies page %d: %v", pages+1, err)
		}
		pages++
		if sz := proto.Size(resp); sz > maxPageBytes+1024 {
			t.Errorf("ListPolicies page %d is %d bytes, more than %d", pages, sz, maxPageBytes)
		}
		for _, p := range resp.GetPolicies() {
			names = append(names, p.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages > n {
			t.Fatalf("more than %d pages", n)
		}
	}
	if len(names) != n || pages < 2 {
		t.Errorf("ListPolicies returned %d policies in %d pages, want %d in several: %v", len(names), pages, n, names)
	}

	var revs []int64
	token, pages = "", 0
	for {
		resp, err := e.policy.ListChanges(e.admin(), &corsdv1.ListChangesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatalf("ListChanges page %d: %v", pages+1, err)
		}
		pages++
		if sz := proto.Size(resp); sz > maxPageBytes+1024 {
			t.Errorf("ListChanges page %d is %d bytes, more than %d", pages, sz, maxPageBytes)
		}
		for _, c := range resp.GetChanges() {
			revs = append(revs, c.GetRevision())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages > n {
			t.Fatalf("more than %d pages", n)
		}
	}
	if want := []int64{1, 2, 3, 4, 5, 6}; fmt.Sprint(revs) != fmt.Sprint(want) {
		t.Errorf("ListChanges revisions %v, want %v", revs, want)
	}
}

// TestLargeItemAlone: a policy larger than a page is sent alone rather
// than never.
func TestLargeItemAlone(t *testing.T) {
	e := newTokenEnv(t)
	huge := bigPolicy("huge", 5000, 900) // 4.8 MB
	if _, err := e.store.Create(e.admin(), huge); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Create(e.admin(), &corsdv1.Policy{Name: "policies/small"}); err != nil {
		t.Fatal(err)
	}
	got := func(resp *corsdv1.ListPoliciesResponse) []string {
		var out []string
		for _, p := range resp.GetPolicies() {
			out = append(out, p.GetName())
		}
		return out
	}
	// The client must accept the large message to see it at all.
	first, err := corsdv1.NewPolicyServiceClient(e.conn).ListPolicies(e.admin(), &corsdv1.ListPoliciesRequest{}, grpc.MaxCallRecvMsgSize(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	if g := got(first); len(g) != 1 || g[0] != "policies/huge" || first.GetNextPageToken() == "" {
		t.Fatalf("first page %v, token %q; want the huge policy alone and a token", g, first.GetNextPageToken())
	}
	second, err := e.policy.ListPolicies(e.admin(), &corsdv1.ListPoliciesRequest{PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if g := got(second); len(g) != 1 || g[0] != "policies/small" || second.GetNextPageToken() != "" {
		t.Errorf("second page %v, token %q; want the small policy and no token", g, second.GetNextPageToken())
	}
}

// TestViolationsCapped: a CreatePolicy with 20,000 bad origins answered a
// 2.5 MB error trailer. The detail lists the first maxViolations and one
// more entry that counts the rest.
func TestViolationsCapped(t *testing.T) {
	e := newTokenEnv(t)
	p := &corsdv1.Policy{}
	for i := range policy.MaxOrigins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://a%05d.x/p", i)})
	}
	_, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "bad", Policy: p})
	st := wantCode(t, err, codes.InvalidArgument)
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil {
		t.Fatal("no BadRequest detail")
	}
	fvs := br.GetFieldViolations()
	if len(fvs) != maxViolations+1 {
		t.Fatalf("%d field violations, want %d", len(fvs), maxViolations+1)
	}
	if fvs[0].GetField() != "policy.origins[0].pattern" {
		t.Errorf("first violation on %q", fvs[0].GetField())
	}
	last := fvs[maxViolations]
	if want := fmt.Sprintf("and %d more", policy.MaxOrigins-maxViolations); !strings.Contains(last.GetDescription(), want) {
		t.Errorf("last violation %q does not say %q", last.GetDescription(), want)
	}
	if sz := proto.Size(st.Proto()); sz > 256<<10 {
		t.Errorf("status is %d bytes", sz)
	}
	if _, err := e.store.Get(e.admin(), "policies/bad"); !isNotFound(err) {
		t.Errorf("store holds the invalid policy: %v", err)
	}
}

// TestDescriptionBounded: a 1 MB policy description was accepted (with
// --max-recv at its default, 512 KB is as much as a request can carry).
func TestDescriptionBounded(t *testing.T) {
	e := newTokenEnv(t)
	p := acme()
	p.Description = strings.Repeat("x", 512<<10)
	_, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: p})
	st := wantCode(t, err, codes.InvalidArgument)
	if _, ok := violations(t, st)["policy.description"]; !ok {
		t.Errorf("no violation on policy.description: %v", st.Message())
	}
	p.Description = strings.Repeat("x", policy.MaxDescriptionLength)
	e.create("acme", p)
}

// TestUpdateMaskBounded: an update mask of 50,000 paths answered one
// violation each; past maxMaskPaths it is one violation.
func TestUpdateMaskBounded(t *testing.T) {
	e := newTokenEnv(t)
	e.create("acme", acme())
	paths := make([]string, 50_000)
	for i := range paths {
		paths[i] = fmt.Sprintf("nope%d", i)
	}
	_, err := e.policy.UpdatePolicy(e.admin(), &corsdv1.UpdatePolicyRequest{
		Policy: &corsdv1.Policy{Name: "policies/acme"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	st := wantCode(t, err, codes.InvalidArgument)
	if v := violations(t, st); len(v) != 1 || !strings.Contains(v["update_mask.paths"], "more than the limit") {
		t.Errorf("violations %v, want one on update_mask.paths", v)
	}
}
