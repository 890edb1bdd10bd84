package server

import (
	"context"
	"fmt"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/corsd/corsd/policy"
)

// authzKinds are the four kinds of request of the answer benchmarks and
// of make loadtest: the repository's CheckRequests and the allowed one
// without its Origin.
func authzKinds(tb testing.TB) []struct {
	name string
	req  *authv3.CheckRequest
} {
	noOrigin := loadExtauthzRequest(tb, "allowed")
	delete(noOrigin.GetAttributes().GetRequest().GetHttp().GetHeaders(), "origin")
	return []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"preflight", loadExtauthzRequest(tb, "preflight")},
		{"allowed", loadExtauthzRequest(tb, "allowed")},
		{"refused", loadExtauthzRequest(tb, "disallowed")},
		{"no_origin", noOrigin},
	}
}

var authzRecords = []DecisionRecord{DecisionRecordNone, DecisionRecordMinimal, DecisionRecordFull}

func TestParseDecisionRecord(t *testing.T) {
	for _, r := range authzRecords {
		got, err := ParseDecisionRecord(r.String())
		if err != nil || got != r {
			t.Errorf("ParseDecisionRecord(%q) = %v, %v; want %v", r.String(), got, err, r)
		}
	}
	for _, s := range []string{"", "Minimal", "all", "full "} {
		if _, err := ParseDecisionRecord(s); err == nil {
			t.Errorf("ParseDecisionRecord(%q): no error", s)
		}
	}
	if err := WithDecisionRecord(DecisionRecord(9))(&options{}); err == nil {
		t.Error("WithDecisionRecord(9): no error")
	}
}

// TestAuthzDecisionRecords checks each record form on each kind: the
// metadata it carries, the status message only in the full form, and
// headers identical in every form.
func TestAuthzDecisionRecords(t *testing.T) {
	d := newExtauthzDecider(t)
	for _, k := range authzKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			full, err := newAuthzServerRecord(d, DecisionRecordFull).Check(context.Background(), k.req)
			if err != nil {
				t.Fatal(err)
			}
			reason := summarize(t, full).Meta["reason"]
			for _, rec := range authzRecords {
				resp, err := newAuthzServerRecord(d, rec).Check(context.Background(), k.req)
				if err != nil {
					t.Fatal(err)
				}
				checkAuthzInvariants(t, resp)
				fields := resp.GetDynamicMetadata().GetFields()
				switch rec {
				case DecisionRecordNone:
					if resp.GetDynamicMetadata() != nil {
						t.Errorf("%v: dynamic_metadata %v, want none", rec, resp.GetDynamicMetadata())
					}
				case DecisionRecordMinimal:
					want := map[string]any{"corsd": fmt.Sprint(reason)}
					want["corsd"] = toLowerASCII(want["corsd"].(string))
					if diff := cmp.Diff(want, resp.GetDynamicMetadata().AsMap()); diff != "" || len(fields) != 1 {
						t.Errorf("%v: dynamic_metadata mismatch (-want +got):\n%s", rec, diff)
					}
				case DecisionRecordFull:
					if len(fields) != 1 || fields[authzMetadataKey].GetStructValue() == nil {
						t.Errorf("%v: dynamic_metadata %v, want the %s struct", rec, resp.GetDynamicMetadata(), authzMetadataKey)
					}
				}
				if msg := resp.GetStatus().GetMessage(); (msg != "") != (rec == DecisionRecordFull && resp.GetStatus().GetCode() != int32(codes.OK)) {
					t.Errorf("%v: status message %q", rec, msg)
				}
				// Apart from the record, every form answers alike.
				strip := func(r *authv3.CheckResponse) *authv3.CheckResponse {
					c := proto.Clone(r).(*authv3.CheckResponse)
					c.DynamicMetadata = nil
					c.Status.Message = ""
					return c
				}
				if diff := cmp.Diff(strip(full), strip(resp), protocmp.Transform()); diff != "" {
					t.Errorf("%v: answer differs from the full form's beyond the record (-full +got):\n%s", rec, diff)
				}
			}
		})
	}
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// echoDecider is a decider over one policy with wildcard origins, whose
// answers echo many different origins.
func echoDecider(tb testing.TB, revision int64, maxAge string) *extauthzDecider {
	tb.Helper()
	cfg := extauthzGoldenConfig()
	cfg.Revision = revision
	cfg.Origins = append(cfg.Origins, policy.Origin{Pattern: "https://*.acme.example", AllowCredentials: true}, policy.Origin{Pattern: "https://*.open.example"})
	cfg.ExposedResponseHeaders = []string{"X-Request-Id"}
	if maxAge != "" {
		cfg.AllowedMethods = append(cfg.AllowedMethods, maxAge) // a different answer per revision
	}
	p, err := policy.Compile(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &extauthzDecider{byName: map[string]*policy.Policy{}, byHost: map[string]*policy.Policy{"api.example.com": p}}
}

// echoRequests are requests whose answers differ in their origin, kind and
// decision.
func echoRequests() []*authv3.CheckRequest {
	var reqs []*authv3.CheckRequest
	for i := range 40 {
		for _, origin := range []string{
			fmt.Sprintf("https://a%d.acme.example", i), fmt.Sprintf("https://b%d.open.example", i),
			fmt.Sprintf("https://evil%d.example", i), "https://app.example.com", "",
		} {
			h := map[string]string{}
			if origin != "" {
				h["origin"] = origin
			}
			reqs = append(reqs, authzHeaderReq("GET", "api.example.com", h))
			pf := map[string]string{"access-control-request-method": "PUT", "access-control-request-headers": "content-type"}
			if origin != "" {
				pf["origin"] = origin
			}
			reqs = append(reqs, authzHeaderReq("OPTIONS", "api.example.com", pf))
			pf = map[string]string{"access-control-request-method": "DELETE"}
			if origin != "" {
				pf["origin"] = origin
			}
			reqs = append(reqs, authzHeaderReq("OPTIONS", "api.example.com", pf))
		}
	}
	return reqs
}

// TestAuthzAnswersReusedAreRight compares, request by request, a server
// that reuses its answers with one rendering each answer afresh: the same
// answer every time, concurrently, for many origins (more shapes than are
// kept), in every record form.
func TestAuthzAnswersReusedAreRight(t *testing.T) {
	d := echoDecider(t, 7, "")
	reqs := echoRequests()
	for _, rec := range authzRecords {
		t.Run(rec.String(), func(t *testing.T) {
			want := make([]*authv3.CheckResponse, len(reqs))
			for i, req := range reqs {
				resp, err := newAuthzServerRecord(d, rec).Check(context.Background(), req) // a new server: nothing kept
				if err != nil {
					t.Fatal(err)
				}
				want[i] = resp
			}
			warm := newAuthzServerRecord(d, rec)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for round := range 2 {
						for i, req := range reqs {
							got, err := warm.Check(context.Background(), req)
							if err != nil {
								t.Error(err)
								return
							}
							if !proto.Equal(want[i], got) {
								t.Errorf("round %d, request %d: reused answer\n%v\nwant\n%v", round, i, got, want[i])
								return
							}
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestAuthzAnswersFollowRevisions: a new revision of a policy gets its own
// answers, never those kept for the previous one, whether its headers
// changed or only its revision (which the full record names).
func TestAuthzAnswersFollowRevisions(t *testing.T) {
	req := authzHeaderReq("OPTIONS", "api.example.com", map[string]string{"origin": "https://app.example.com", "access-control-request-method": "PUT"})
	for _, tt := range []struct {
		name   string
		method string
	}{
		{name: "new headers", method: "PATCH"},
		{name: "same headers", method: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthzServerRecord(echoDecider(t, 7, ""), DecisionRecordFull)
			first, err := a.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			a.d = echoDecider(t, 8, tt.method)
			second, err := a.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := newAuthzServerRecord(a.d, DecisionRecordFull).Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if proto.Equal(first, second) || !proto.Equal(second, fresh) {
				t.Errorf("after a new revision, answer\n%v\nwant\n%v (the previous revision answered\n%v)", second, fresh, first)
			}
		})
	}
}

// TestAuthzAnswerAllocs holds the ext_authz handler as the gRPC service
// runs it (request conversion, decision, encoded answer) to its allocation
// budget per kind, gRPC's codec included: none when the answer does not
// echo the Origin, three (the bytes, their wrapper, the buffer gRPC writes)
// when it does; and Check, which returns the message, to none and one.
func TestAuthzAnswerAllocs(t *testing.T) {
	wantWire := map[string]float64{"preflight": 3, "allowed": 3, "refused": 0, "no_origin": 0}
	codec := newAuthzCodec()
	wantCheck := map[string]float64{"preflight": 1, "allowed": 1, "refused": 0, "no_origin": 0}
	d := newExtauthzDecider(t)
	ctx := context.Background()
	for _, rec := range authzRecords {
		a := newAuthzServerRecord(d, rec)
		for _, k := range authzKinds(t) {
			if n := testing.AllocsPerRun(200, func() {
				v, err := a.checkWire(ctx, k.req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := codec.Marshal(v); err != nil {
					t.Fatal(err)
				}
			}); n > wantWire[k.name] {
				t.Errorf("%v %s: %v allocations per served Check, want at most %v", rec, k.name, n, wantWire[k.name])
			}
			if n := testing.AllocsPerRun(200, func() {
				if _, err := a.Check(ctx, k.req); err != nil {
					t.Fatal(err)
				}
			}); n > wantCheck[k.name] {
				t.Errorf("%v %s: %v allocations per Check, want at most %v", rec, k.name, n, wantCheck[k.name])
			}
		}
	}
}

// BenchmarkExtAuthzAnswer is the ext_authz handler's work per Check as the
// gRPC service does it (checkWire, then the codec), per record form and
// kind of request; "message" is Check then proto.Marshal, as before answers
// were kept encoded.
func BenchmarkExtAuthzAnswer(b *testing.B) {
	d := newExtauthzDecider(b)
	ctx := context.Background()
	codec := newAuthzCodec()
	for _, rec := range authzRecords {
		a := newAuthzServerRecord(d, rec)
		for _, k := range authzKinds(b) {
			b.Run(rec.String()+"/"+k.name, func(b *testing.B) {
				b.ReportAllocs()
				var size int
				for b.Loop() {
					v, err := a.checkWire(ctx, k.req)
					if err != nil {
						b.Fatal(err)
					}
					out, err := codec.Marshal(v)
					if err != nil {
						b.Fatal(err)
					}
					size = out.Len()
					out.Free()
				}
				b.ReportMetric(float64(size), "answer-bytes")
			})
		}
	}
	a := newAuthzServerRecord(d, DecisionRecordMinimal)
	for _, k := range authzKinds(b) {
		b.Run("message/minimal/"+k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := a.Check(ctx, k.req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := proto.Marshal(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAuthzWireMatchesMessage decodes what the gRPC service sends, kept
// encoded answers included (whole or around an echoed Origin), and
// requires the answer Check renders afresh, for every kind of request and
// record form.
func TestAuthzWireMatchesMessage(t *testing.T) {
	d := echoDecider(t, 7, "")
	for name, p := range newExtauthzDecider(t).byHost {
		if _, ok := d.byHost[name]; !ok {
			d.byHost[name] = p
		}
	}
	reqs := append(echoRequests(), authzHeaderReq("GET", "unknown.example", map[string]string{"origin": "https://app.example.com"}))
	// Cross-origin protection: denied answers with a body naming the origin.
	for _, origin := range []string{"https://evil.example", "https://evil2.example", "https://app.example.com"} {
		reqs = append(reqs, authzHeaderReq("POST", "guarded.example.com", map[string]string{"origin": origin, "sec-fetch-site": "cross-site"}))
	}
	for _, k := range authzKinds(t) {
		reqs = append(reqs, k.req)
	}
	for _, rec := range authzRecords {
		t.Run(rec.String(), func(t *testing.T) {
			a := newAuthzServerRecord(d, rec)
			encoded := 0
			for round := range 2 {
				for i, req := range reqs {
					want, err := newAuthzServerRecord(d, rec).Check(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					v, err := a.checkWire(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					var got *authv3.CheckResponse
					switch v := v.(type) {
					case *authzWire:
						encoded++
						got = &authv3.CheckResponse{}
						if err := proto.Unmarshal(v.b, got); err != nil {
							t.Fatalf("request %d: kept bytes do not decode: %v", i, err)
						}
					case *authv3.CheckResponse:
						got = v
					default:
						t.Fatalf("checkWire answered %T", v)
					}
					if !proto.Equal(want, got) {
						t.Fatalf("round %d, request %d: sent\n%v\nwant\n%v", round, i, got, want)
					}
				}
			}
			if encoded < len(reqs)/2 {
				t.Errorf("%d of %d answers sent from kept bytes, want most of them", encoded, 2*len(reqs))
			}
		})
	}
}

// TestAuthzCodec: the codec sends kept bytes as they are and encodes any
// other message as gRPC's proto codec does.
func TestAuthzCodec(t *testing.T) {
	c := newAuthzCodec()
	if c.Name() != "proto" {
		t.Errorf("Name() = %q, want proto", c.Name())
	}
	b, err := c.Marshal(newAuthzWire([]byte{1, 2, 3}))
	if err != nil || string(b.Materialize()) != "\x01\x02\x03" {
		t.Errorf("Marshal(authzWire) = %v, %v", b.Materialize(), err)
	}
	m := &authv3.CheckResponse{Status: authzStatusDeniedBare}
	b, err = c.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back := &authv3.CheckResponse{}
	if err := c.Unmarshal(b, back); err != nil || !proto.Equal(m, back) {
		t.Errorf("round trip = %v, %v; want %v", back, err, m)
	}
}

// FuzzAuthzKeptAnswers: one server keeps answers across every input; each
// answer it sends (decoded) must equal the one a fresh server renders, for
// random origins, methods and request headers against policies with exact
// and wildcard origins, cross-origin protection, report-only and disabled
// modes, in every record form.
func FuzzAuthzKeptAnswers(f *testing.F) {
	f.Add("GET", "https://a1.acme.example", "", "", uint8(0), uint8(1))
	f.Add("OPTIONS", "https://app.example.com", "PUT", "content-type", uint8(0), uint8(2))
	f.Add("OPTIONS", "https://b.open.example", "DELETE", "x-a", uint8(0), uint8(0))
	f.Add("POST", "https://evil.example", "", "", uint8(2), uint8(1))
	f.Add("GET", "null", "", "", uint8(1), uint8(2))
	f.Add("PUT", "https://app.example.com", "", "", uint8(3), uint8(0))
	f.Add("OPTIONS", "https://a.acme.example", "PATCH", "x-one,x-two", uint8(6), uint8(1))
	f.Add("OPTIONS", "https://a.acme.example", "PURGE", "x-three", uint8(6), uint8(1))
	d := echoDecider(f, 7, "")
	for name, p := range newExtauthzDecider(f).byHost {
		if _, ok := d.byHost[name]; !ok {
			d.byHost[name] = p
		}
	}
	// Any method and request header, with credentials: the answer names
	// what was asked for, beyond the Origin.
	star, err := policy.Compile(policy.Config{
		Name: "policies/star", Revision: 9, Hosts: []string{"star.example.com"},
		Origins:        []policy.Origin{{Pattern: "https://*.acme.example", AllowCredentials: true}, {Pattern: "https://*.open.example"}},
		AllowedMethods: []string{"*"}, AllowedRequestHeaders: []string{"*"},
	})
	if err != nil {
		f.Fatal(err)
	}
	d.byHost["star.example.com"] = star
	hosts := []string{"api.example.com", "public.example.com", "guarded.example.com", "shadow.example.com", "off.example.com", "unknown.example", "star.example.com"}
	var warm [3]*authzServer
	for i, rec := range authzRecords {
		warm[i] = newAuthzServerRecord(d, rec)
	}
	f.Fuzz(func(t *testing.T, method, origin, acrm, acrh string, host, rec uint8) {
		h := map[string]string{"sec-fetch-site": "cross-site"}
		for k, v := range map[string]string{"origin": origin, "access-control-request-method": acrm, "access-control-request-headers": acrh} {
			if v != "" {
				h[k] = v
			}
		}
		req := authzHeaderReq(method, hosts[int(host)%len(hosts)], h)
		r := authzRecords[int(rec)%len(authzRecords)]
		want, err := newAuthzServerRecord(d, r).Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			v, err := warm[int(rec)%len(authzRecords)].checkWire(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := v.(*authv3.CheckResponse)
			if w, isWire := v.(*authzWire); isWire {
				got, ok = &authv3.CheckResponse{}, true
				if err := proto.Unmarshal(w.b, got); err != nil {
					t.Fatalf("kept bytes do not decode: %v", err)
				}
			}
			if !ok {
				t.Fatalf("checkWire answered %T", v)
			}
			if !proto.Equal(want, got) {
				t.Fatalf("sent\n%v\nwant\n%v", got, want)
			}
		}
	})
}
