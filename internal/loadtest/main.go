// Command loadtest measures what corsd's ext_authz answers cost, against
// two floors measured in the same run (make loadtest):
//
//   - smallest: a constant grpc-go ext_authz server answering like the
//     smallest correct server would (corsd's decision: OK with the headers
//     to add, or denied with the HTTP status and the CORS headers; no
//     dynamic metadata, no status message, no body), marshaled per call;
//   - replay: a server that answers corsd's own answer bytes, prebuilt.
//
// For each kind of request (preflight, allowed, refused, no Origin; the
// Envoy-shaped CheckRequests of testdata/extauthz) it reports the answer's
// size, the server's CPU per OK Check at a fixed 5,000 calls/s (utime +
// stime from /proc/PID/stat over the measured window: every server is its
// own process), the load generator's CPU per call, and p50/p99 latency at a
// fixed 1,000 calls/s; then the write-to-decision propagation of AddOrigin.
//
// The load generator is this program run as a child ("loadtest gen"): an
// open-loop, fixed-rate gRPC client on one connection that decodes every
// answer in full, as Envoy does, and accounts its own CPU with getrusage.
// ghz cannot report its CPU per call or the server's, so it is not used.
// With -pin (the default on 2 or more CPUs) every server runs on CPU 0 and
// the generator on CPU 1 (taskset). Measurements alternate between the
// servers in short slices, taking turns, so the noise of a shared machine
// hits all alike; ratios are given pooled and as the median of the cycles.
// Every run is bounded; the processes it starts are stopped on exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/corsd/corsd/internal/corsdtest"
)

func main() {
	var err error
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "floor":
			err = runFloor(os.Args[2:])
		case "gen":
			err = runGen(os.Args[2:])
		default:
			err = run(os.Args[1:])
		}
	} else {
		err = run(nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// options are the knobs of a run.
type options struct {
	payloads string
	records  []string // corsd's --decision-record values; "" is corsd's default
	cycles   int
	slice    time.Duration
	cpuRate  int
	latRate  int
	warmup   time.Duration
	workers  int
	pin      bool
	samples  int
	verbose  bool
	dump     bool
}

func parseOptions(args []string, root string) (*options, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	o := &options{}
	quick := fs.Bool("quick", false, "three short cycles (about a minute): a smoke test, not a measurement")
	records := fs.String("records", "", "comma-separated --decision-record forms to run corsd with, one corsd each (none, minimal, full); empty: corsd's default")
	fs.StringVar(&o.payloads, "payloads", filepath.Join(root, "testdata", "extauthz"), "directory holding preflight.json, allowed.json and disallowed.json (CheckRequests)")
	fs.IntVar(&o.cycles, "cycles", 10, "measured slices per server, kind and rate; the servers take turns, one slice each")
	fs.DurationVar(&o.slice, "slice", time.Second, "duration of one slice")
	fs.IntVar(&o.cpuRate, "cpu-rate", 5000, "calls/s of the CPU runs")
	fs.IntVar(&o.latRate, "latency-rate", 1000, "calls/s of the latency runs")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up of each server before each run")
	fs.IntVar(&o.workers, "workers", 16, "calls in flight at most")
	fs.BoolVar(&o.pin, "pin", runtime.NumCPU() >= 2, "servers on CPU 0, the generator on CPU 1 (taskset)")
	fs.IntVar(&o.samples, "samples", 50, "AddOrigin write-to-visible samples (0 to skip, at most 500)")
	fs.BoolVar(&o.verbose, "v", false, "log each run")
	fs.BoolVar(&o.dump, "dump", false, "print each server's answers (protojson, with their sizes) and stop")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		o.cycles, o.slice, o.warmup, o.samples = 3, 500*time.Millisecond, 300*time.Millisecond, 10
	}
	o.records = []string{""}
	if *records != "" {
		o.records = strings.Split(*records, ",")
		for _, r := range o.records {
			if r != "none" && r != "minimal" && r != "full" {
				return nil, fmt.Errorf("-records: unknown form %q (none, minimal, full)", r)
			}
		}
	}
	if o.cycles < 1 || o.cycles > 50 || o.cpuRate < 1 || o.cpuRate > 50_000 || o.latRate < 1 || o.latRate > 50_000 ||
		o.slice < 100*time.Millisecond || o.slice > 10*time.Second ||
		o.warmup < 0 || o.warmup > 5*time.Second || o.workers < 1 || o.workers > 256 || o.samples < 0 || o.samples > 500 || len(o.records) > 3 {
		return nil, errors.New("flags out of range")
	}
	return o, nil
}

func run(args []string) error {
	root, err := corsdtest.ModuleRoot()
	if err != nil {
		return err
	}
	o, err := parseOptions(args, root)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute) // a hard bound on the whole run
	defer cancel()
	h, err := newHarness(ctx, root, o)
	if err != nil {
		return err
	}
	defer h.close()
	if o.dump {
		return h.dumpAnswers(os.Stdout)
	}
	return h.measure(ctx)
}
