package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// reportedCounts returns corsd's corsd_reported_decisions_total series as
// "policy kind result reason report_only" -> count.
func (c *corsd) reportedCounts() map[string]int64 {
	c.t.Helper()
	rec := httptest.NewRecorder()
	c.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	re := regexp.MustCompile(`(?m)^corsd_reported_decisions_total\{kind="([^"]*)",policy="([^"]*)",reason="([^"]*)",report_only="([^"]*)",result="([^"]*)"\} (\d+)$`)
	out := map[string]int64{}
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		n, err := strconv.ParseInt(m[6], 10, 64)
		if err != nil {
			c.t.Fatalf("metric value %q: %v", m[6], err)
		}
		out[strings.Join([]string{m[2], m[1], m[5], m[3], m[4]}, " ")] = n
	}
	return out
}

// reportingWatcher returns a watcher of acme (created with mode and the
// trusted origin https://app.example) and a reporter, both on corsd c.
func reportingWatcher(t *testing.T, c *corsd, mode corsdv1.Mode, opts ...client.ReportOption) (*client.Watcher, *client.Reporter) {
	t.Helper()
	cl := c.client()
	p := &corsdv1.Policy{Mode: mode, Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example"}}}
	if _, err := cl.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: p}); err != nil {
		t.Fatalf("CreatePolicy: %v", err)
	}
	w, err := client.NewWatcher(cl, []string{acme}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	rep, err := client.NewReporter(cl, "checkout-1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w, rep
}

func serve(h http.Handler, origins ...string) {
	for _, o := range origins {
		hdr := http.Header{}
		if o != "" {
			hdr.Set("Origin", o)
		}
		h.ServeHTTP(httptest.NewRecorder(), newRequest("GET", "http://api.example/", hdr))
	}
}

func TestReporterReportOnly(t *testing.T) {
	c := newCorsd(t)
	w, rep := reportingWatcher(t, c, corsdv1.Mode_MODE_REPORT_ONLY)
	h := w.Middleware(acme, client.WithReporter(rep))(benchInner)
	serve(h, "https://evil.example", "https://evil.example", "https://other.example", "https://app.example", "")
	if err := rep.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	want := map[string]int64{
		"policies/acme actual refused origin_not_allowed true": 3,
		"policies/acme actual allowed allowed true":            1,
	}
	if got := c.reportedCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("corsd counted %v, want %v", got, want)
	}
	// Sent counts are not sent again.
	if err := rep.Flush(t.Context()); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
	if got := c.reportedCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after a second Flush corsd counted %v, want %v", got, want)
	}
	if rep.Lost() != 0 {
		t.Errorf("Lost() = %d, want 0", rep.Lost())
	}
}

func TestReporterEnforced(t *testing.T) {
	tests := []struct {
		name string
		opts []client.ReportOption
		mw   []client.Option
		want map[string]int64
	}{
		{name: "enforced decisions are not sent by default", want: map[string]int64{}},
		{name: "WithReportEnforced sends them", opts: []client.ReportOption{client.WithReportEnforced()},
			want: map[string]int64{"policies/acme actual refused origin_not_allowed false": 1}},
		{name: "WithReportOnly middleware makes them report-only", mw: []client.Option{client.WithReportOnly()},
			want: map[string]int64{"policies/acme actual refused origin_not_allowed true": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorsd(t)
			w, rep := reportingWatcher(t, c, corsdv1.Mode_MODE_ENFORCE, tt.opts...)
			serve(w.Middleware(acme, append(tt.mw, client.WithReporter(rep))...)(benchInner), "https://evil.example")
			if err := rep.Flush(t.Context()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if got := c.reportedCounts(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("corsd counted %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReporterKeepsCountsWhileCorsdIsDown: a failed send loses nothing; the
// next one delivers it all.
func TestReporterKeepsCountsWhileCorsdIsDown(t *testing.T) {
	c := newCorsd(t)
	w, rep := reportingWatcher(t, c, corsdv1.Mode_MODE_REPORT_ONLY)
	h := w.Middleware(acme, client.WithReporter(rep))(benchInner)
	serve(h, "https://evil.example", "https://evil.example")
	c.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := rep.Flush(ctx); err == nil {
		t.Fatal("Flush with corsd down succeeded")
	}
	serve(h, "https://evil.example") // the middleware decides from its snapshot meanwhile
	c.start()
	eventually(t, 10*time.Second, "Flush after corsd restarted", func() bool { return rep.Flush(t.Context()) == nil })
	want := map[string]int64{"policies/acme actual refused origin_not_allowed true": 3}
	if got := c.reportedCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("corsd counted %v, want %v", got, want)
	}
}

// TestReporterBound: past the number of distinct reports one call may
// carry, origins are dropped and the counts stay right.
func TestReporterBound(t *testing.T) {
	c := newCorsd(t)
	w, rep := reportingWatcher(t, c, corsdv1.Mode_MODE_REPORT_ONLY)
	h := w.Middleware(acme, client.WithReporter(rep))(benchInner)
	const n = 1500
	for i := range n {
		serve(h, fmt.Sprintf("https://evil-%d.example", i))
	}
	if err := rep.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	want := map[string]int64{"policies/acme actual refused origin_not_allowed true": n}
	if got := c.reportedCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("corsd counted %v, want %v", got, want)
	}
	if rep.Lost() != 0 {
		t.Errorf("Lost() = %d, want 0", rep.Lost())
	}
}

// TestReporterRun: Run sends on its interval and sends the rest when its
// context ends.
func TestReporterRun(t *testing.T) {
	c := newCorsd(t)
	w, rep := reportingWatcher(t, c, corsdv1.Mode_MODE_REPORT_ONLY, client.WithReportInterval(20*time.Millisecond))
	h := w.Middleware(acme, client.WithReporter(rep))(benchInner)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	serve(h, "https://evil.example")
	key := "policies/acme actual refused origin_not_allowed true"
	eventually(t, 10*time.Second, "the interval's report", func() bool { return c.reportedCounts()[key] == 1 })
	if err := rep.Run(ctx); err == nil {
		t.Error("a second Run succeeded")
	}
	serve(h, "https://evil.example")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := c.reportedCounts()[key]; got != 2 {
		t.Errorf("after Run returned corsd counted %d, want 2", got)
	}
}

// TestReporterAllocatesNothing: counting a decision already counted once
// costs no allocation on the request path.
func TestReporterAllocatesNothing(t *testing.T) {
	p, err := policy.Compile(policy.Config{Name: acme, Mode: policy.ModeReportOnly, Origins: []policy.Origin{{Pattern: "https://app.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := client.NewReporter(client.New(nil), "svc")
	if err != nil {
		t.Fatal(err)
	}
	h := client.Middleware(acme, client.StaticSource(p), client.WithReporter(rep))(benchInner)
	rw := &benchWriter{h: make(http.Header, 8)}
	for _, origin := range []string{"https://evil.example", "https://app.example"} {
		req := newRequest("GET", "http://api.example/", http.Header{"Origin": {origin}})
		h.ServeHTTP(rw, req)
		if n := testing.AllocsPerRun(100, func() { rw.reset(); h.ServeHTTP(rw, req) }); n != 0 {
			t.Errorf("origin %s: %v allocs per request, want 0", origin, n)
		}
	}
}

func TestNewReporterValidates(t *testing.T) {
	c := client.New(nil)
	tests := []struct {
		name     string
		c        *client.Client
		reporter string
		wantErr  string // "" for success
	}{
		{name: "service name", c: c, reporter: "checkout-7f9c"},
		{name: "empty name", c: c, reporter: ""},
		{name: "nil client", c: nil, reporter: "svc", wantErr: "nil Client"},
		{name: "too long", c: c, reporter: strings.Repeat("r", 129), wantErr: "at most 128"},
		{name: "newline", c: c, reporter: "svc\nforged log line", wantErr: "printable ASCII"},
		{name: "non-ASCII", c: c, reporter: "sérvice", wantErr: "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.NewReporter(tt.c, tt.reporter)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewReporter(%q): %v", tt.reporter, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewReporter(%q) = %v, want an error containing %q", tt.reporter, err, tt.wantErr)
			}
		})
	}
}
