package client

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	w := &Watcher{cfg: watchConfig{backoffMin: 100 * time.Millisecond, backoffMax: 2 * time.Second}}
	tests := []struct {
		name    string
		attempt int
		ceil    time.Duration
	}{
		{name: "first retry", attempt: 0, ceil: 100 * time.Millisecond},
		{name: "third retry", attempt: 2, ceil: 400 * time.Millisecond},
		{name: "capped", attempt: 10, ceil: 2 * time.Second},
		{name: "shift overflow", attempt: 100, ceil: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var maxSeen time.Duration
			for range 2000 {
				d := w.backoff(tt.attempt)
				if d <= 0 || d > tt.ceil+time.Millisecond {
					t.Fatalf("backoff(%d) = %v, want in (0, %v]", tt.attempt, d, tt.ceil+time.Millisecond)
				}
				maxSeen = max(maxSeen, d)
			}
			// Full jitter spreads over the whole range.
			if maxSeen < tt.ceil/2 {
				t.Errorf("backoff(%d): max of 2000 draws %v, want ≥ %v", tt.attempt, maxSeen, tt.ceil/2)
			}
		})
	}
}

// TestTokenRefusedOverInsecureConnection: even when a caller builds its own
// plaintext connection, the token credentials refuse to travel over it.
func TestTokenRefusedOverInsecureConnection(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerToken("0123456789abcdef")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	_, err = New(cc).Policies().ListPolicies(t.Context(), &corsdv1.ListPoliciesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("call over insecure credentials with a token: %v, want Unauthenticated (token refused)", err)
	}
}

func cacheSeed(t testing.TB) []byte {
	pb := &corsdv1.Policy{
		Name:     "policies/acme",
		Revision: 4,
		Origins:  []*corsdv1.OriginRule{{Pattern: "https://app.example.com", AllowCredentials: true}},
	}
	p, err := policypb.Compile(pb)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshot{revision: 9, policies: map[string]*entry{"policies/acme": {pb: pb, compiled: p}}}
	data, err := encodeCache([]string{"policies/acme"}, s, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCacheRoundTrip(t *testing.T) {
	data := cacheSeed(t)
	st, err := decodeCache(data)
	if err != nil {
		t.Fatalf("decodeCache: %v\n%s", err, data)
	}
	if st.snap.revision != 9 || !cmp.Equal(st.names, []string{"policies/acme"}) || st.snap.policies["policies/acme"] == nil {
		t.Errorf("decodeCache = revision %d, names %v, policies %v", st.snap.revision, st.names, st.snap.policies)
	}
	if got := st.snap.policies["policies/acme"].compiled.Name(); got != "policies/acme" {
		t.Errorf("compiled policy name = %q", got)
	}
}

// FuzzDecodeCache: the cache loader never panics on any file content; what
// it accepts re-encodes to a file that decodes to the same snapshot.
func FuzzDecodeCache(f *testing.F) {
	f.Add(cacheSeed(f))
	f.Add([]byte(`{"format":"corsd-client-cache/v1","saved_at":"2026-01-01T00:00:00Z","revision":0,"names":[],"policies":[]}`))
	f.Add([]byte(`{"format":"corsd-client-cache/v1","revision":1,"names":[],"policies":[{"name":"policies/a","origins":[{"pattern":"*"}]}]}`))
	f.Add([]byte(`{"format":"corsd-client-cache/v1","revision":-1}`))
	f.Add([]byte(`{"format":"corsd-client-cache/v1","names":["b","a"]}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeCache(data)
		if err != nil {
			return
		}
		again, err := encodeCache(st.names, st.snap, st.savedAt)
		if err != nil {
			t.Fatalf("encodeCache of an accepted file: %v", err)
		}
		st2, err := decodeCache(again)
		if err != nil {
			t.Fatalf("decodeCache of a re-encoded file: %v\n%s", err, again)
		}
		if st2.snap.revision != st.snap.revision || !cmp.Equal(st2.names, st.names) || len(st2.snap.policies) != len(st.snap.policies) {
			t.Fatalf("round trip changed the snapshot: %d %v %d -> %d %v %d", st.snap.revision, st.names, len(st.snap.policies),
				st2.snap.revision, st2.names, len(st2.snap.policies))
		}
		for name, e := range st.snap.policies {
			e2 := st2.snap.policies[name]
			if e2 == nil || !proto.Equal(e.pb, e2.pb) {
				t.Fatalf("round trip changed policy %s", name)
			}
		}
	})
}

// TestReporterHardBound: distinct reports past maxCoarseKeys, even without
// origin, are lost and counted as such.
func TestReporterHardBound(t *testing.T) {
	r, err := NewReporter(New(nil), "svc")
	if err != nil {
		t.Fatal(err)
	}
	d := policy.Decision{Policy: "policies/a", Kind: policy.KindActual, Reason: policy.ReasonOriginNotAllowed}
	for i := range maxCoarseKeys + 10 {
		d.Revision, d.Origin = int64(i), fmt.Sprintf("https://o%d.example", i)
		r.record(&d, true)
	}
	counts := r.counts
	var total int64
	for _, n := range counts {
		total += n
	}
	if len(counts) != maxCoarseKeys || total != maxCoarseKeys || r.Lost() != 10 {
		t.Errorf("%d keys, %d counted, %d lost; want %d, %d, 10", len(counts), total, r.Lost(), maxCoarseKeys, maxCoarseKeys)
	}
}

// refusingDecisions refuses every ReportDecisions call with code.
type refusingDecisions struct {
	corsdv1.DecisionServiceClient
	code  codes.Code
	calls int
}

func (f *refusingDecisions) ReportDecisions(context.Context, *corsdv1.ReportDecisionsRequest, ...grpc.CallOption) (*corsdv1.ReportDecisionsResponse, error) {
	f.calls++
	return nil, status.Error(f.code, "refused")
}

// TestReporterFailedSend: counts refused as invalid are lost (a retry
// would fail the same way); counts of any other failure are kept.
func TestReporterFailedSend(t *testing.T) {
	d := policy.Decision{Policy: "policies/a", Kind: policy.KindActual, Reason: policy.ReasonOriginNotAllowed, Origin: "https://evil.example"}
	tests := []struct {
		code     codes.Code
		wantKept int64
		wantLost int64
	}{
		{code: codes.InvalidArgument, wantKept: 0, wantLost: 3},
		{code: codes.Unavailable, wantKept: 3, wantLost: 0},
		{code: codes.PermissionDenied, wantKept: 3, wantLost: 0},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			fake := &refusingDecisions{code: tt.code}
			r, err := NewReporter(&Client{decisions: fake}, "svc")
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r.record(&d, true)
			}
			if err := r.Flush(t.Context()); status.Code(err) != tt.code {
				t.Fatalf("Flush = %v, want code %v", err, tt.code)
			}
			var kept int64
			for _, n := range r.counts {
				kept += n
			}
			if kept != tt.wantKept || r.Lost() != tt.wantLost || fake.calls != 1 {
				t.Errorf("kept %d, lost %d, %d calls; want %d, %d, 1", kept, r.Lost(), fake.calls, tt.wantKept, tt.wantLost)
			}
		})
	}
}

// recordingDecisions accepts every ReportDecisions call and keeps it.
type recordingDecisions struct {
	corsdv1.DecisionServiceClient
	reqs []*corsdv1.ReportDecisionsRequest
}

func (f *recordingDecisions) ReportDecisions(_ context.Context, req *corsdv1.ReportDecisionsRequest, _ ...grpc.CallOption) (*corsdv1.ReportDecisionsResponse, error) {
	f.reqs = append(f.reqs, req)
	return &corsdv1.ReportDecisionsResponse{}, nil
}

// TestReporterSplitsLargeCounts: a count past what corsd takes in one
// report (kept across a long outage) goes in several.
func TestReporterSplitsLargeCounts(t *testing.T) {
	fake := &recordingDecisions{}
	r, err := NewReporter(&Client{decisions: fake}, "svc")
	if err != nil {
		t.Fatal(err)
	}
	k := reportKey{policy: "policies/a", kind: policy.KindActual, reason: policy.ReasonOriginNotAllowed, reportOnly: true}
	const total = 2*policypb.MaxReportCount + 7
	r.counts[k] = total
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var sum int64
	var n int
	for _, req := range fake.reqs {
		for _, rp := range req.GetReports() {
			if rp.GetCount() < 1 || rp.GetCount() > policypb.MaxReportCount {
				t.Errorf("report count %d outside 1..%d", rp.GetCount(), policypb.MaxReportCount)
			}
			sum += rp.GetCount()
			n++
		}
	}
	if sum != total || n != 3 {
		t.Errorf("sent %d in %d reports, want %d in 3", sum, n, total)
	}
}
