package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain", stat: "1234 (corsd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 8 0 1000 0 0", want: 2800 * time.Millisecond},
		{name: "name with spaces and parentheses", stat: "7 (a) b) c) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0", want: 30 * time.Millisecond},
		{name: "no name", stat: "7 a R 1", wantErr: true},
		{name: "truncated", stat: "7 (a) R 1 1 1 0 -1 0 0 0 0 0 1", wantErr: true},
		{name: "negative", stat: "7 (a) R 1 1 1 0 -1 0 0 0 0 0 -1 2 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU(%q) = %v, %v; want %v, error %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestProcCPUSelf(t *testing.T) {
	// Burn 100 ms of CPU (by getrusage): /proc must account for it, give
	// or take its ticks.
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self0, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if s, err := selfCPU(); err != nil || s-self0 >= 100*time.Millisecond {
			break
		}
	}
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after - before; got < 100*time.Millisecond-3*clockTick {
		t.Errorf("procCPU grew by %v while getrusage grew by 100 ms", got)
	}
}

func header(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
}

func TestSmallestAnswer(t *testing.T) {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{"corsd": structpb.NewStringValue("ALLOWED")}}
	acao := header("access-control-allow-origin", "https://a.example", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	vary := header("vary", "Origin", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	tests := []struct {
		name string
		in   *authv3.CheckResponse
		want *authv3.CheckResponse
	}{
		{
			name: "ok keeps its headers, drops the metadata",
			in: &authv3.CheckResponse{Status: &rpcstatus.Status{}, DynamicMetadata: md, HttpResponse: &authv3.CheckResponse_OkResponse{
				OkResponse: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{acao, vary}},
			}},
			want: &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{
				OkResponse: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{acao, vary}},
			}},
		},
		{
			name: "denied keeps status and headers, drops message, body and metadata",
			in: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7, Message: "why"}, DynamicMetadata: md, HttpResponse: &authv3.CheckResponse_DeniedResponse{
				DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: 204}, Headers: []*corev3.HeaderValueOption{acao}, Body: "refused\n"},
			}},
			want: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{
				DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: 204}, Headers: []*corev3.HeaderValueOption{acao}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := smallestAnswer(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("smallestAnswer mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := smallestAnswer(&authv3.CheckResponse{Status: &rpcstatus.Status{}}); err == nil {
		t.Error("smallestAnswer of an answer without an HTTP response: no error")
	}
}

func TestExpectDecision(t *testing.T) {
	acao := header("access-control-allow-origin", "https://a.example", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	preflight := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{
		DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: 204}, Headers: []*corev3.HeaderValueOption{acao}},
	}}
	allowed := &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{
		OkResponse: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{acao}},
	}}
	pass := &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
	tests := []struct {
		kind string
		resp *authv3.CheckResponse
		ok   bool
	}{
		{"preflight", preflight, true},
		{"preflight", allowed, false},
		{"allowed", allowed, true},
		{"allowed", pass, false},
		{"refused", pass, true},
		{"refused", allowed, false},
		{"no_origin", pass, true},
		{"no_origin", preflight, false},
	}
	for _, tt := range tests {
		if err := expectDecision(tt.kind, tt.resp); (err == nil) != tt.ok {
			t.Errorf("expectDecision(%s, %v) = %v, want ok %v", tt.kind, tt.resp, err, tt.ok)
		}
	}
}

// TestReplayFloorAndGenerator serves an answer through the replay floor
// and drives it with the generator: every call is answered, and the bytes
// on the wire are the replayed ones.
func TestReplayFloorAndGenerator(t *testing.T) {
	answer := &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{
		OkResponse: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{header("vary", "Origin", 0)}},
	}}
	b, err := proto.Marshal(answer)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	gs.RegisterService(replayDesc(encoded(b)), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	req, err := proto.Marshal(&authv3.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	o := genOptions{targets: []genTarget{{addr, os.Getpid()}, {addr, os.Getpid()}}, rate: 500, slice: 100 * time.Millisecond, cycles: 2, workers: 4}
	start := time.Now()
	res, err := generate(context.Background(), o, encoded(req))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("generate: %d results, want one per target (2)", len(res))
	}
	for i, r := range res {
		if r.Calls != 100 || len(r.Latencies) != 100 || len(r.CycleCPU) != 2 || len(r.CycleP99) != 2 {
			t.Errorf("target %d: %d calls, %d latencies, %d and %d cycles; want 100, 100, 2, 2", i, r.Calls, len(r.Latencies), len(r.CycleCPU), len(r.CycleP99))
		}
	}
	if d := time.Since(start); d < 380*time.Millisecond {
		t.Errorf("generate took %v for 4 slices of 100 ms, want about 400 ms (paced)", d)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	var got encoded
	if err := conn.Invoke(context.Background(), checkMethod, encoded(req), &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Errorf("replayed %x, want %x", []byte(got), b)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tt := range []struct {
		p    int
		want time.Duration
	}{{50, 5}, {99, 10}, {10, 1}, {100, 10}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %d) = %v, want %v", ds, tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
