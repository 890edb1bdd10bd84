// Command soak runs corsd for a long while under steady load and checks
// that it neither leaks nor fails (make soak; not part of CI):
//
//   - ext_authz Check at half of the rate corsd reached in a short
//     closed-loop burst measured first (-rps overrides it);
//   - WatchPolicies streams that connect, read for a while and disconnect,
//     over and over, while an admin adds and removes an origin every second
//     (so the watchers have changes to carry);
//   - corsd's RSS, heap in use and goroutines, read from its /metrics every
//     second: the medians of the first and last minute (or tenth of the
//     run, the first after a warm-up of half that) must agree within 5%,
//     and no call may fail.
//
// It builds cmd/corsd and runs it on 127.0.0.1:0 with a temporary
// database through internal/corsdtest. Every run is bounded by -duration
// plus a minute.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/corsd/corsd/internal/corsdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

const (
	policyID   = "soak"
	policyName = "policies/" + policyID
	// flatLimit is how much a resource may grow between the first and the
	// last window.
	flatLimit = 0.05
)

type options struct {
	duration time.Duration
	rps      int
	workers  int
	watchers int
	payloads string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := corsdtest.ModuleRoot()
	if err != nil {
		return err
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to run the load (at least 20s, at most 2h)")
	flag.IntVar(&o.rps, "rps", 0, "ext_authz requests per second; 0 for half of the rate measured first")
	flag.IntVar(&o.workers, "c", 16, "concurrent ext_authz callers")
	flag.IntVar(&o.watchers, "watchers", 8, "WatchPolicies streams kept connecting and disconnecting")
	flag.StringVar(&o.payloads, "payloads", filepath.Join(root, "testdata", "extauthz"), "directory holding allowed.json and preflight.json (CheckRequests)")
	flag.Parse()
	if o.duration < 20*time.Second || o.duration > 2*time.Hour || o.rps < 0 || o.workers < 1 || o.workers > 256 || o.watchers < 0 || o.watchers > 1000 {
		return errors.New("flags out of range")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.duration+time.Minute)
	defer cancel()

	var reqs []*authv3.CheckRequest
	for _, name := range []string{"allowed", "preflight"} {
		data, err := os.ReadFile(filepath.Join(o.payloads, name+".json")) //nolint:gosec // G304: the operator's payload directory
		if err != nil {
			return err
		}
		req := &authv3.CheckRequest{}
		if err := protojson.Unmarshal(data, req); err != nil {
			return fmt.Errorf("payload %s: %w", name, err)
		}
		reqs = append(reqs, req)
	}

	tmp, err := os.MkdirTemp("", "corsd-soak-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	logf("building corsd")
	bin := filepath.Join(tmp, "corsd")
	if err := corsdtest.Build(ctx, root, "./cmd/corsd", bin); err != nil {
		return err
	}
	d, err := corsdtest.Start(ctx, bin, "--db", filepath.Join(tmp, "corsd.db"))
	if err != nil {
		return err
	}
	defer func() { _ = d.Stop(corsdtest.StopTimeout) }()
	conn, err := grpc.NewClient(d.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	admin := corsdv1.NewPolicyServiceClient(conn)
	if err := createPolicy(ctx, admin, reqs[0]); err != nil {
		return err
	}
	authz := authv3.NewAuthorizationClient(conn)

	var errs errCounter
	rps := o.rps
	if rps == 0 {
		n := burst(ctx, authz, reqs, o.workers, 5*time.Second, &errs)
		rps = max(1, n/5/2)
		logf("closed-loop burst: %d req/s; soaking at half: %d req/s", n/5, rps)
	}

	lctx, lcancel := context.WithTimeout(ctx, o.duration)
	defer lcancel()
	var wg sync.WaitGroup
	var checks atomic.Int64
	wg.Go(func() { paced(lctx, authz, reqs, o.workers, rps, &checks, &errs) })
	var cycles atomic.Int64
	for i := range o.watchers {
		wg.Go(func() { churnWatcher(lctx, conn, i, &cycles, &errs) })
	}
	wg.Go(func() { churnOrigins(lctx, admin, &errs) })

	// The first window starts after a warm-up: pools and buffers fill
	// while the load ramps, and that is not a leak.
	window := min(time.Minute, o.duration/10)
	samples := sampleMetrics(lctx, window/2, "http://"+d.HTTPAddr+"/metrics", &errs)
	wg.Wait()
	if d.Err() != nil {
		return fmt.Errorf("corsd exited: %w", d.Err())
	}

	first, last := windowOf(samples, window, false), windowOf(samples, window, true)
	fmt.Printf("\n| corsd, %s at %d req/s ext_authz, %d watchers churning | first %s (median) | last %s (median) | change |\n|---|---|---|---|\n", o.duration, rps, o.watchers, window, window)
	failed := false
	for _, m := range []struct{ name, metric string }{
		{"RSS (MB)", "process_resident_memory_bytes"},
		{"heap in use (MB)", "go_memstats_heap_inuse_bytes"},
		{"goroutines", "go_goroutines"},
	} {
		a, b := median(first, m.metric), median(last, m.metric)
		change := (b - a) / a
		scale := 1.0
		if strings.HasSuffix(m.metric, "_bytes") {
			scale = 1 << 20
		}
		mark := ""
		if change > flatLimit {
			mark, failed = " (past 5%)", true
		}
		fmt.Printf("| %s | %.1f | %.1f | %+.1f%%%s |\n", m.name, a/scale, b/scale, 100*change, mark)
	}
	fmt.Printf("\next_authz checks: %d (%.0f/s); watch cycles: %d; errors: %d\n", checks.Load(), float64(checks.Load())/o.duration.Seconds(), cycles.Load(), errs.n.Load())
	if e := errs.first.Load(); e != nil {
		fmt.Printf("first error: %v\n", *e)
	}
	if errs.n.Load() > 0 || failed {
		return errors.New("failed: errors, or a resource that did not stay flat")
	}
	return nil
}

// errCounter counts failures and keeps the first.
type errCounter struct {
	n     atomic.Int64
	first atomic.Pointer[error]
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	e.first.CompareAndSwap(nil, &err)
}

func createPolicy(ctx context.Context, admin corsdv1.PolicyServiceClient, allowed *authv3.CheckRequest) error {
	h := allowed.GetAttributes().GetRequest().GetHttp().GetHeaders()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := admin.CreatePolicy(cctx, &corsdv1.CreatePolicyRequest{PolicyId: policyID, Policy: &corsdv1.Policy{
		Description:           "corsd soak",
		Origins:               []*corsdv1.OriginRule{{Pattern: h["origin"], AllowCredentials: true}},
		AllowedMethods:        []string{"GET", "PUT"},
		AllowedRequestHeaders: []string{"content-type", "authorization"},
		Hosts:                 []string{h[":authority"]},
	}})
	if err != nil {
		return fmt.Errorf("CreatePolicy: %w", err)
	}
	return nil
}

// burst calls Check as fast as workers can for d and returns the count.
func burst(ctx context.Context, c authv3.AuthorizationClient, reqs []*authv3.CheckRequest, workers int, d time.Duration, errs *errCounter) int {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				if err := check(ctx, c, reqs[i%len(reqs)]); err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// paced calls Check at rps, spread over workers, until ctx ends.
func paced(ctx context.Context, c authv3.AuthorizationClient, reqs []*authv3.CheckRequest, workers, rps int, n *atomic.Int64, errs *errCounter) {
	tick := time.NewTicker(time.Second / 100)
	defer tick.Stop()
	// A second of requests may queue, and twice the burst's callers serve
	// it: a pause of the machine is absorbed, a corsd that cannot keep
	// half its rate is not.
	work := make(chan *authv3.CheckRequest, rps)
	var wg sync.WaitGroup
	for range 2 * workers {
		wg.Go(func() {
			for req := range work {
				if err := check(ctx, c, req); err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				n.Add(1)
			}
		})
	}
	start, sent := time.Now(), 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			due := int(time.Since(start).Seconds() * float64(rps))
			for ; sent < due && ctx.Err() == nil; sent++ {
				select {
				case work <- reqs[sent%len(reqs)]:
				default:
					// The callers are behind: a missed request is an error
					// of the soak, not a silent drop.
					errs.add(errors.New("callers fell behind the rate"))
				}
			}
		}
	}
	close(work)
	wg.Wait()
}

func check(ctx context.Context, c authv3.AuthorizationClient, req *authv3.CheckRequest) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.Check(cctx, req)
	if err != nil {
		return err
	}
	if resp.GetStatus() == nil {
		return errors.New("CheckResponse without a status")
	}
	return nil
}

// churnWatcher opens a watch, reads it for a while, drops it, and again.
func churnWatcher(ctx context.Context, conn *grpc.ClientConn, i int, cycles *atomic.Int64, errs *errCounter) {
	dec := corsdv1.NewDecisionServiceClient(conn)
	for k := 0; ctx.Err() == nil; k++ {
		hold := time.Duration(1000+(i*131+k*71)%2000) * time.Millisecond
		wctx, cancel := context.WithTimeout(ctx, hold)
		s, err := dec.WatchPolicies(wctx, &corsdv1.WatchPoliciesRequest{})
		synced := false
		for err == nil {
			var ev *corsdv1.WatchPoliciesResponse
			if ev, err = s.Recv(); err == nil && ev.GetType() == corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED {
				synced = true
			}
		}
		cancel()
		switch code := status.Code(err); {
		case ctx.Err() != nil:
		case (code == codes.DeadlineExceeded || code == codes.Canceled) && synced:
			cycles.Add(1)
		default:
			errs.add(fmt.Errorf("watch: %w (synced %v)", err, synced))
		}
	}
}

// churnOrigins adds and removes an origin, one change a second.
func churnOrigins(ctx context.Context, admin corsdv1.PolicyServiceClient, errs *errCounter) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if k%2 == 0 {
			_, err = admin.AddOrigin(cctx, &corsdv1.AddOriginRequest{Policy: policyName, Origin: &corsdv1.OriginRule{Pattern: "https://churn.example.com"}})
		} else {
			_, err = admin.RemoveOrigin(cctx, &corsdv1.RemoveOriginRequest{Policy: policyName, Pattern: "https://churn.example.com"})
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			errs.add(fmt.Errorf("origin churn: %w", err))
		}
	}
}

// sample is one reading of corsd's /metrics.
type sample struct {
	at     time.Time
	values map[string]float64
}

// sampleMetrics reads url every second from warm on, until ctx ends.
func sampleMetrics(ctx context.Context, warm time.Duration, url string, errs *errCounter) []sample {
	var out []sample
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(warm):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
		v, err := scrape(ctx, url)
		if err != nil {
			if ctx.Err() == nil {
				errs.add(err)
			}
			continue
		}
		out = append(out, sample{at: time.Now(), values: v})
	}
}

func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// windowOf returns the samples of the first (or last) d of the run.
func windowOf(s []sample, d time.Duration, last bool) []sample {
	if len(s) == 0 {
		return nil
	}
	if last {
		from := s[len(s)-1].at.Add(-d)
		i := slices.IndexFunc(s, func(x sample) bool { return !x.at.Before(from) })
		return s[i:]
	}
	to := s[0].at.Add(d)
	i := slices.IndexFunc(s, func(x sample) bool { return x.at.After(to) })
	if i < 0 {
		return s
	}
	return s[:i]
}

func median(s []sample, metric string) float64 {
	var v []float64
	for _, x := range s {
		v = append(v, x.values[metric])
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
}
