package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// stalledWatch opens a WatchPolicies stream, on its own connection with
// small flow-control windows, and never reads it: a hostile client.
func stalledWatch(t *testing.T, addr string) (corsdv1.DecisionService_WatchPoliciesClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(as(checkerToken))
	s, err := corsdv1.NewDecisionServiceClient(conn).WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return s, func() { cancel(); _ = conn.Close() }
}

// TestStalledWatchersBoundedMemory: 20 watchers that never read, over 7 MB
// of policies, held ~400 MB: each decoded the whole store before sending.
// Now a stream holds one chunk of policies at most, a stalled stream is
// cut off after the send timeout, and the count of streams is capped.
func TestStalledWatchersBoundedMemory(t *testing.T) {
	const (
		n          = 10
		policies   = 350
		policySize = 20 << 10 // 7 MB in all
		// inFlight is what gRPC holds per stream past our chunk: a few
		// encoded messages, each in a pooled buffer of the next size up.
		inFlight = 4 * 32 << 10
	)
	e := newEnv(t, envConfig{tcp: true, opts: []Option{
		WithTokens(testTokens...), WithMaxWatchers(n), WithWatchSendTimeout(2 * time.Second),
	}})
	for i := range policies {
		p := &corsdv1.Policy{Name: fmt.Sprintf("policies/p%03d", i), Description: strings.Repeat("x", policySize)}
		if _, err := e.store.Create(e.admin(), p); err != nil {
			t.Fatal(err)
		}
	}
	waitRevision(t, e, policies)
	base := heapInUse()

	var streams []corsdv1.DecisionService_WatchPoliciesClient
	for range n {
		s, stop := stalledWatch(t, e.conn.Target())
		defer stop()
		streams = append(streams, s)
	}
	// Give the streams time to fill their windows and block.
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(e.srv.metrics.watchStreams) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	held := heapInUse()
	// Per stream: one chunk and the messages in flight; the store's size
	// does not appear.
	bound := uint64(n*(watchChunk*policySize+inFlight) + 8<<20)
	if held > base && held-base > bound {
		t.Errorf("%d stalled watchers hold %d MB more heap; want at most %d MB (the store is %d MB)", n, (held-base)>>20, bound>>20, policies*policySize>>20)
	}
	t.Logf("heap: %d MB before, %d MB with %d stalled watchers over %d MB of policies", base>>20, held>>20, n, policies*policySize>>20)

	// Past the cap: refused.
	extra, stop := stalledWatch(t, e.conn.Target())
	defer stop()
	if _, err := extra.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("watch past the cap: %v, want ResourceExhausted", err)
	}
	if got := metricValue(e.srv.metrics.watchRefused); got != 1 {
		t.Errorf("corsd_watch_streams_refused_total = %v, want 1", got)
	}

	// The stalled streams are cut off after the send timeout.
	deadline = time.Now().Add(20 * time.Second)
	for metricValue(e.srv.metrics.watchEvicted) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := metricValue(e.srv.metrics.watchEvicted); got != n {
		t.Fatalf("corsd_watch_streams_evicted_total = %v, want %d", got, n)
	}
	for _, s := range streams[:1] {
		var err error
		for err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "cut off") {
			t.Errorf("stalled stream ended with %v, want ResourceExhausted", err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for metricValue(e.srv.metrics.watchStreams) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := metricValue(e.srv.metrics.watchStreams); got != 0 {
		t.Errorf("corsd_watch_streams = %v after eviction, want 0", got)
	}
}

// waitRevision waits until the server's snapshot reached rev.
func waitRevision(t *testing.T, e *env, rev int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.srv.live.cur.Load().rev < rev {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot stuck at revision %d, want %d", e.srv.live.cur.Load().rev, rev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchInitialStateUnderWrites: the initial state is read in chunks
// while writes go on; the client ends with the store's state, SYNCED
// comes once every policy it showed is covered, and no policy ever goes
// back to an older revision.
func TestWatchInitialStateUnderWrites(t *testing.T) {
	e := newTokenEnv(t)
	ctx := e.admin()
	const n = 100
	for i := range n {
		if _, err := e.store.Create(ctx, &corsdv1.Policy{Name: fmt.Sprintf("policies/p%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(as(checkerToken), 30*time.Second)
	defer cancel()
	s, err := e.dec.WatchPolicies(wctx, &corsdv1.WatchPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("policies/p%03d", rng.IntN(n+20))
			switch i % 3 {
			case 0:
				_, _ = e.store.Delete(ctx, name, store.Precondition{})
			default:
				if _, err := e.store.Update(ctx, name, store.Precondition{}, func(p *corsdv1.Policy) error { p.Description = fmt.Sprint(i); return nil }); err != nil {
					_, _ = e.store.Create(ctx, &corsdv1.Policy{Name: name, Description: fmt.Sprint(i)})
				}
			}
		}
	})
	state := map[string]*corsdv1.Policy{}
	seen := map[string]int64{}
	synced := false
	var last int64
	apply := func(ev *corsdv1.WatchPoliciesResponse) {
		if r := ev.GetRevision(); ev.GetType() != corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED && r < seen[ev.GetName()] {
			t.Errorf("%s went back from revision %d to %d", ev.GetName(), seen[ev.GetName()], r)
		}
		seen[ev.GetName()] = ev.GetRevision()
		switch ev.GetType() {
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, corsdv1.WatchEventType_WATCH_EVENT_TYPE_PUT:
			state[ev.GetName()] = ev.GetPolicy()
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_DELETE:
			delete(state, ev.GetName())
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED:
			synced = true
		}
		if ev.GetType() != corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
			last = ev.GetRevision()
		}
	}
	for i := 0; !synced; i++ {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if i < 20 {
			time.Sleep(5 * time.Millisecond) // a slow start: writes overlap the listing
		}
		apply(ev)
	}
	close(stop)
	wg.Wait()
	final, err := e.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for last < final {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		apply(ev)
	}
	want := map[string]*corsdv1.Policy{}
	page, err := e.store.List(ctx, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range page.Policies {
		want[p.GetName()] = p
	}
	if len(want) != len(state) {
		t.Errorf("client has %d policies, store %d", len(state), len(want))
	}
	for name, p := range want {
		if !proto.Equal(state[name], p) {
			t.Errorf("%s: client has %v, store %v", name, state[name], p)
		}
	}
}
