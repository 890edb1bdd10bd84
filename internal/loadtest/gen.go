package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// genResult is what one generator run reports for one target (as JSON on
// stdout) over its measured slices, warm-up excluded.
type genResult struct {
	Calls     int             `json:"calls"`      // answered with status OK
	Late      int             `json:"late"`       // calls that started over 1 ms after their slot
	GenCPU    time.Duration   `json:"gen_cpu"`    // this process's utime+stime during the target's slices
	ServerCPU time.Duration   `json:"server_cpu"` // the server's utime+stime (/proc/PID/stat) during them
	Latencies []time.Duration `json:"latencies"`  // per OK call, from its start to its answer
	// Per cycle (one slice of every target, back to back): the server's
	// CPU per call and the p99 latency, so that ratios can be taken
	// between slices measured seconds apart.
	CycleCPU []float64       `json:"cycle_cpu"` // µs per call
	CycleP99 []time.Duration `json:"cycle_p99"`
}

// genTarget is one server: its address and process id.
type genTarget struct {
	addr string
	pid  int
}

// genOptions are one run's settings.
type genOptions struct {
	targets []genTarget
	request string
	rate    int
	slice   time.Duration
	cycles  int
	warmup  time.Duration
	workers int
}

// runGen drives the targets in turn at a fixed rate and prints one
// genResult per target, in order, as a JSON array.
func runGen(args []string) error {
	fs := flag.NewFlagSet("loadtest gen", flag.ContinueOnError)
	var o genOptions
	fs.Func("target", "host:port,pid of a server (repeated)", func(v string) error {
		addr, pid, ok := strings.Cut(v, ",")
		n, err := strconv.Atoi(pid)
		if !ok || addr == "" || err != nil || n <= 0 {
			return fmt.Errorf("want host:port,pid, got %q", v)
		}
		o.targets = append(o.targets, genTarget{addr: addr, pid: n})
		return nil
	})
	fs.StringVar(&o.request, "request", "", "file holding the CheckRequest, binary")
	fs.IntVar(&o.rate, "rate", 1000, "calls per second")
	fs.DurationVar(&o.slice, "slice", time.Second, "measured time on one target before moving to the next")
	fs.IntVar(&o.cycles, "cycles", 5, "slices per target")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up of each target at the same rate")
	fs.IntVar(&o.workers, "workers", 16, "calls in flight at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(o.targets) == 0 || len(o.targets) > 8 || o.request == "" || o.rate < 1 || o.rate > 100_000 ||
		o.slice <= 0 || o.slice > 30*time.Second || o.cycles < 1 || o.cycles > 100 || o.warmup < 0 || o.warmup > 10*time.Second || o.workers < 1 || o.workers > 1000 {
		return errors.New("gen: flags missing or out of range")
	}
	req, err := os.ReadFile(o.request)
	if err != nil {
		return err
	}
	res, err := generate(context.Background(), o, encoded(req))
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// generate warms every target up, then measures them in cycles, one slice
// each in turn, so that the noise of a shared machine hits all alike. Each
// target has its own connection. Calls are paced open-loop: slot i starts
// at i/rate, whatever the answers before it, up to o.workers in flight.
// Answers are decoded in full, as Envoy does.
func generate(ctx context.Context, o genOptions, req encoded) ([]*genResult, error) {
	conns := make([]*grpc.ClientConn, len(o.targets))
	for i, t := range o.targets {
		conn, err := grpc.NewClient(t.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			return nil, err
		}
		defer func() { _ = conn.Close() }()
		conns[i] = conn
		if o.warmup > 0 {
			if _, err := pace(ctx, conn, req, o.rate, o.warmup, o.workers); err != nil {
				return nil, fmt.Errorf("gen: warm-up of %s: %w", t.addr, err)
			}
		}
	}
	out := make([]*genResult, len(o.targets))
	for i := range out {
		out[i] = &genResult{}
	}
	for range o.cycles {
		for i, t := range o.targets {
			srv0, err := procCPU(t.pid)
			if err != nil {
				return nil, err
			}
			self0, err := selfCPU()
			if err != nil {
				return nil, err
			}
			r, err := pace(ctx, conns[i], req, o.rate, o.slice, o.workers)
			if err != nil {
				return nil, fmt.Errorf("gen: %s: %w", t.addr, err)
			}
			self1, err := selfCPU()
			if err != nil {
				return nil, err
			}
			srv1, err := procCPU(t.pid)
			if err != nil {
				return nil, err
			}
			g := out[i]
			g.Calls += r.Calls
			g.Late += r.Late
			g.GenCPU += self1 - self0
			g.ServerCPU += srv1 - srv0
			g.Latencies = append(g.Latencies, r.Latencies...)
			g.CycleCPU = append(g.CycleCPU, us(srv1-srv0)/float64(r.Calls))
			g.CycleP99 = append(g.CycleP99, percentile(r.Latencies, 99))
		}
	}
	return out, nil
}

// pace makes rate×d calls paced at rate and returns when all are answered.
func pace(ctx context.Context, conn *grpc.ClientConn, req encoded, rate int, d time.Duration, workers int) (*genResult, error) {
	total := max(int(int64(rate)*int64(d)/int64(time.Second)), 1)
	slots := make(chan time.Time, total)
	type acc struct {
		lats       []time.Duration
		errs, late int
		lastErr    error
	}
	accs := make([]acc, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			a := &accs[w]
			a.lats = make([]time.Duration, 0, total/workers+16)
			for slot := range slots {
				t0 := time.Now()
				if t0.Sub(slot) > time.Millisecond {
					a.late++
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp := &authv3.CheckResponse{}
				err := conn.Invoke(cctx, checkMethod, req, resp)
				cancel()
				if err != nil {
					a.errs++
					a.lastErr = err
					continue
				}
				a.lats = append(a.lats, time.Since(t0))
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	for i := range total {
		slot := start.Add(time.Duration(i) * interval)
		if wait := time.Until(slot); wait > 0 {
			time.Sleep(wait)
		}
		slots <- slot
	}
	close(slots)
	wg.Wait()
	res := &genResult{}
	var (
		errs    int
		lastErr error
	)
	for i := range accs {
		a := &accs[i]
		res.Latencies = append(res.Latencies, a.lats...)
		errs += a.errs
		res.Late += a.late
		if a.lastErr != nil {
			lastErr = a.lastErr
		}
	}
	res.Calls = len(res.Latencies)
	if errs > 0 {
		return nil, fmt.Errorf("gen: %d of %d calls failed, last: %w", errs, total, lastErr)
	}
	return res, nil
}
