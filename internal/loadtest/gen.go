package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// genResult is what one generator run reports (as JSON on stdout) over its
// measured window, warm-up excluded.
type genResult struct {
	Calls     int             `json:"calls"`      // answered with status OK
	Errors    int             `json:"errors"`     // failed calls
	Late      int             `json:"late"`       // calls that started over 1 ms after their slot
	Wall      time.Duration   `json:"wall"`       // from the first slot to the last answer
	GenCPU    time.Duration   `json:"gen_cpu"`    // this process's utime+stime
	ServerCPU time.Duration   `json:"server_cpu"` // the server's utime+stime (/proc/PID/stat)
	Latencies []time.Duration `json:"latencies"`  // per OK call, from its start to its answer
}

// genOptions are one run's settings.
type genOptions struct {
	addr      string
	request   string
	rate      int
	duration  time.Duration
	warmup    time.Duration
	workers   int
	serverPID int
}

// runGen drives one target at a fixed rate and prints a genResult.
func runGen(args []string) error {
	fs := flag.NewFlagSet("loadtest gen", flag.ContinueOnError)
	var o genOptions
	fs.StringVar(&o.addr, "addr", "", "target host:port")
	fs.StringVar(&o.request, "request", "", "file holding the CheckRequest, binary")
	fs.IntVar(&o.rate, "rate", 1000, "calls per second")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "measured duration")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up at the same rate")
	fs.IntVar(&o.workers, "workers", 16, "calls in flight at most")
	fs.IntVar(&o.serverPID, "server-pid", 0, "process whose CPU time is measured over the window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.addr == "" || o.request == "" || o.serverPID <= 0 || o.rate < 1 || o.rate > 100_000 ||
		o.duration <= 0 || o.duration > time.Minute || o.warmup < 0 || o.warmup > 10*time.Second || o.workers < 1 || o.workers > 1000 {
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

// generate runs the warm-up, then the measured window, on one connection.
// Calls are paced open-loop: slot i starts at i/rate, whatever the answers
// before it, up to o.workers in flight. Answers are decoded in full, as
// Envoy does.
func generate(ctx context.Context, o genOptions, req encoded) (*genResult, error) {
	conn, err := grpc.NewClient(o.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	if o.warmup > 0 {
		if _, err := pace(ctx, conn, req, o.rate, o.warmup, o.workers); err != nil {
			return nil, fmt.Errorf("gen: warm-up: %w", err)
		}
	}
	srv0, err := procCPU(o.serverPID)
	if err != nil {
		return nil, err
	}
	self0, err := selfCPU()
	if err != nil {
		return nil, err
	}
	res, err := pace(ctx, conn, req, o.rate, o.duration, o.workers)
	if err != nil {
		return nil, err
	}
	self1, err := selfCPU()
	if err != nil {
		return nil, err
	}
	srv1, err := procCPU(o.serverPID)
	if err != nil {
		return nil, err
	}
	res.GenCPU, res.ServerCPU = self1-self0, srv1-srv0
	return res, nil
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
	res := &genResult{Wall: time.Since(start)}
	var lastErr error
	for i := range accs {
		a := &accs[i]
		res.Latencies = append(res.Latencies, a.lats...)
		res.Errors += a.errs
		res.Late += a.late
		if a.lastErr != nil {
			lastErr = a.lastErr
		}
	}
	res.Calls = len(res.Latencies)
	if res.Errors > 0 {
		return nil, fmt.Errorf("gen: %d of %d calls failed, last: %w", res.Errors, total, lastErr)
	}
	return res, nil
}
