// Command loadtest measures corsd against its performance targets and
// prints a markdown table (make loadtest):
//
//   - ext_authz throughput: corsd's envoy.service.auth.v3.Authorization/Check
//     must reach at least 85% of the requests per second of a no-op ext_authz
//     server that returns a constant, prebuilt CheckResponse of the same shape
//     (corsd's own answer to the allowed request);
//   - latency: at a fixed 1,000 requests per second, corsd's p99 must be within
//     1.3x of the no-op server's p99;
//   - propagation: after an admin AddOrigin returns, CheckOrigin must allow
//     the new origin within 10 ms (p99 of the samples).
//
// It builds cmd/corsd and starts it on 127.0.0.1:0 with a temporary
// database (both through internal/corsdtest, which keeps CORSD_* variables
// out of its environment), creates the policy through the admin API
// (loopback, so no token), starts the no-op server in process, and drives
// both with the pinned ghz binary (bin/ghz, else ghz on PATH; using server
// reflection) on the testdata/extauthz payloads. Every run is bounded; the
// processes it starts are stopped on exit.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/internal/corsdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

const (
	checkMethod       = "envoy.service.auth.v3.Authorization/Check"
	checkOriginMethod = "corsd.v1.DecisionService/CheckOrigin"
	policyID          = "loadtest"
	policyName        = "policies/" + policyID
	trustedOrigin     = "https://app.example.com"
	apiHost           = "api.example.com"

	throughputTarget = 0.85
	p99Target        = 1.3
	propagationLimit = 10 * time.Millisecond
)

// options are the knobs of a run; the defaults finish in about 2 minutes.
type options struct {
	payloads    string
	concurrency int
	total       int
	rate        int
	rateFor     time.Duration
	rounds      int
	samples     int
	verbose     bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := corsdtest.ModuleRoot()
	if err != nil {
		return err
	}
	var o options
	flag.StringVar(&o.payloads, "payloads", filepath.Join(root, "testdata", "extauthz"), "directory holding preflight.json, allowed.json and disallowed.json (CheckRequests)")
	flag.IntVar(&o.concurrency, "c", 50, "ghz concurrency of the throughput runs")
	flag.IntVar(&o.total, "n", 20000, "requests per throughput run")
	flag.IntVar(&o.rate, "rps", 1000, "request rate of the fixed-rate runs")
	flag.DurationVar(&o.rateFor, "rate-duration", 10*time.Second, "duration of each fixed-rate run")
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds each measurement is split into")
	flag.IntVar(&o.samples, "samples", 50, "AddOrigin write-to-visible samples (at most 500)")
	flag.BoolVar(&o.verbose, "v", false, "log each ghz run")
	flag.Parse()
	if o.samples < 1 || o.samples > 500 || o.total < 1 || o.total > 1_000_000 || o.rate < 1 || o.rateFor <= 0 || o.rateFor > time.Minute || o.concurrency < 1 || o.rounds < 1 || o.rounds > 20 {
		return errors.New("flags out of range")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // a hard bound on the whole run
	defer cancel()

	ghz, err := corsdtest.Tool(root, "ghz")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "corsd-loadtest-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	// ghz gets the payloads serialized (-B): building each request from
	// JSON would make the client, not the servers, the bottleneck.
	requests := map[string]*authv3.CheckRequest{}
	payloads := map[string]string{}
	for _, name := range []string{"preflight", "allowed", "disallowed"} {
		req := &authv3.CheckRequest{}
		if err := readProtoJSON(filepath.Join(o.payloads, name+".json"), req); err != nil {
			return fmt.Errorf("payload %s: %w", name, err)
		}
		requests[name] = req
		if payloads[name], err = writeBinary(tmp, name+".bin", req); err != nil {
			return err
		}
	}

	logf("building corsd")
	bin := filepath.Join(tmp, "corsd")
	if err := corsdtest.Build(ctx, root, "./cmd/corsd", bin); err != nil {
		return err
	}
	corsd, err := corsdtest.Start(ctx, bin, "--db", filepath.Join(tmp, "corsd.db"), "--log-level", "info")
	if err != nil {
		return err
	}
	defer func() { _ = corsd.Stop(corsdtest.StopTimeout) }()
	logf("corsd listening on %s", corsd.GRPCAddr)

	conn, err := grpc.NewClient(corsd.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	admin := corsdv1.NewPolicyServiceClient(conn)
	decisions := corsdv1.NewDecisionServiceClient(conn)
	if err := createPolicy(ctx, admin, decisions); err != nil {
		return err
	}

	// One no-op server per payload, each answering with corsd's own response
	// to that payload, so both sides marshal the same bytes: the comparison
	// measures deciding, not the size of the answer.
	authz := authv3.NewAuthorizationClient(conn)
	noops := map[string]*noopServer{}
	for _, name := range []string{"preflight", "allowed", "disallowed"} {
		constant, err := authz.Check(ctx, requests[name])
		if err != nil {
			return fmt.Errorf("corsd Check(%s): %w", name, err)
		}
		noop, err := startNoop(constant)
		if err != nil {
			return err
		}
		defer noop.stop()
		noops[name] = noop
		logf("no-op ext_authz server for %s listening on %s", name, noop.addr)
	}
	if len(noops["allowed"].resp.GetOkResponse().GetResponseHeadersToAdd()) == 0 {
		return fmt.Errorf("corsd did not allow the allowed payload: %v", noops["allowed"].resp)
	}
	if noops["preflight"].resp.GetDeniedResponse().GetStatus().GetCode() != 204 {
		return fmt.Errorf("corsd did not answer the preflight with 204: %v", noops["preflight"].resp)
	}

	g := &ghzRunner{bin: ghz, dir: tmp, verbose: o.verbose}
	var rows []row

	// Warm both up, then run each measurement in rounds that alternate
	// between corsd and the no-op server, pooling the rounds per target, so
	// that the noise of a shared machine hits both alike.
	for _, target := range []string{corsd.GRPCAddr, noops["allowed"].addr} {
		if _, err := g.run(ctx, target, checkMethod, payloads["allowed"], "-c", fmt.Sprint(o.concurrency), "-n", "2000"); err != nil {
			return err
		}
	}
	perRound := max(o.total/o.rounds, 1)
	for _, name := range []string{"preflight", "allowed", "disallowed"} {
		res, err := g.interleaved(ctx, []string{corsd.GRPCAddr, noops[name].addr}, checkMethod, payloads[name], o.rounds, "-c", fmt.Sprint(o.concurrency), "-n", fmt.Sprint(perRound))
		if err != nil {
			return err
		}
		c, n := res[0].rps(), res[1].rps()
		rows = append(rows, row{
			target: fmt.Sprintf("ext_authz throughput, %s (req/s, -c %d)", name, o.concurrency),
			corsd:  fmt.Sprintf("%.0f", c), noop: fmt.Sprintf("%.0f", n),
			ratio: fmt.Sprintf("%.2f", c/n), met: yesNo(c/n >= throughputTarget) + fmt.Sprintf(" (≥ %.2f)", throughputTarget),
		})
	}
	checkOrigin, err := writeBinary(tmp, "check_origin.bin", &corsdv1.CheckOriginRequest{Host: apiHost, Method: "GET", Origin: trustedOrigin})
	if err != nil {
		return err
	}
	co, err := g.interleaved(ctx, []string{corsd.GRPCAddr}, checkOriginMethod, checkOrigin, o.rounds, "-c", fmt.Sprint(o.concurrency), "-n", fmt.Sprint(perRound))
	if err != nil {
		return err
	}
	rows = append(rows, row{target: fmt.Sprintf("CheckOrigin throughput (req/s, -c %d)", o.concurrency), corsd: fmt.Sprintf("%.0f", co[0].rps()), noop: "—", ratio: "—", met: "—"})

	// Latency at a fixed rate. -n rather than -z: ghz cancels the calls in
	// flight when -z ends.
	rate := []string{"--rps", fmt.Sprint(o.rate), "-c", "20", "-n", fmt.Sprint(max(int(float64(o.rate)*o.rateFor.Seconds())/o.rounds, 1))}
	for _, name := range []string{"preflight", "allowed", "disallowed"} {
		res, err := g.interleaved(ctx, []string{corsd.GRPCAddr, noops[name].addr}, checkMethod, payloads[name], o.rounds, rate...)
		if err != nil {
			return err
		}
		cp, np := res[0].p99(), res[1].p99()
		ratio := float64(cp) / float64(np)
		rows = append(rows, row{
			target: fmt.Sprintf("ext_authz p99 at %d req/s, %s", o.rate, name),
			corsd:  ms(cp), noop: ms(np),
			ratio: fmt.Sprintf("%.2f", ratio), met: yesNo(ratio <= p99Target) + fmt.Sprintf(" (≤ %.1fx)", p99Target),
		})
	}
	co, err = g.interleaved(ctx, []string{corsd.GRPCAddr}, checkOriginMethod, checkOrigin, o.rounds, rate...)
	if err != nil {
		return err
	}
	rows = append(rows, row{target: fmt.Sprintf("CheckOrigin p99 at %d req/s", o.rate), corsd: ms(co[0].p99()), noop: "—", ratio: "—", met: "—"})

	// Write to visible.
	lat, err := propagation(ctx, admin, decisions, o.samples)
	if err != nil {
		return err
	}
	p50, p99, maxLat := percentile(lat, 50), percentile(lat, 99), slices.Max(lat)
	rows = append(rows, row{
		target: fmt.Sprintf("AddOrigin → CheckOrigin allowed, p50 / p99 / max (n=%d)", len(lat)),
		corsd:  fmt.Sprintf("%s / %s / %s", ms(p50), ms(p99), ms(maxLat)), noop: "—", ratio: "—",
		met: yesNo(p99 < propagationLimit) + " (p99 < 10 ms)",
	})

	fmt.Println()
	fmt.Println("| target | corsd | no-op | ratio | target met |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %s |\n", r.target, r.corsd, r.noop, r.ratio, r.met)
	}
	fmt.Printf("\nbin/ghz over loopback; %d CPUs shared by ghz, corsd and the no-op server (which runs in this process).\n", runtime.NumCPU())
	return nil
}

type row struct{ target, corsd, noop, ratio, met string }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
}

func readProtoJSON(path string, m proto.Message) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, m)
}

func writeBinary(dir, name string, m proto.Message) (string, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, b, 0o600)
}

// createPolicy creates the load-test policy and waits until decisions see
// it.
func createPolicy(ctx context.Context, admin corsdv1.PolicyServiceClient, decisions corsdv1.DecisionServiceClient) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := admin.CreatePolicy(cctx, &corsdv1.CreatePolicyRequest{PolicyId: policyID, Policy: &corsdv1.Policy{
		Description:           "corsd load test",
		Origins:               []*corsdv1.OriginRule{{Pattern: trustedOrigin, AllowCredentials: true}},
		AllowedMethods:        []string{"GET", "PUT"},
		AllowedRequestHeaders: []string{"content-type", "authorization"},
		MaxAge:                durationpb.New(600 * time.Second),
		Hosts:                 []string{apiHost},
	}})
	if err != nil {
		return fmt.Errorf("CreatePolicy: %w", err)
	}
	for {
		resp, err := decisions.CheckOrigin(cctx, &corsdv1.CheckOriginRequest{Host: apiHost, Method: "GET", Origin: trustedOrigin})
		if err == nil && resp.GetDecision().GetAllowed() {
			return nil
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("the created policy never became visible (last error: %w)", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// propagation adds n new origins one at a time and measures, for each, the
// time from AddOrigin's return to the first CheckOrigin that allows it.
func propagation(ctx context.Context, admin corsdv1.PolicyServiceClient, decisions corsdv1.DecisionServiceClient, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	suffix := time.Now().UnixNano()
	for i := range n {
		origin := fmt.Sprintf("https://p%d-%d.example.com", i, suffix)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := admin.AddOrigin(cctx, &corsdv1.AddOriginRequest{Policy: policyName, Origin: &corsdv1.OriginRule{Pattern: origin}})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("AddOrigin: %w", err)
		}
		start := time.Now()
		for {
			resp, err := decisions.CheckOrigin(cctx, &corsdv1.CheckOriginRequest{Host: apiHost, Method: "GET", Origin: origin})
			if err != nil {
				cancel()
				return nil, fmt.Errorf("CheckOrigin after AddOrigin %d: %w", i, err)
			}
			if resp.GetDecision().GetAllowed() {
				out = append(out, time.Since(start))
				break
			}
		}
		cancel()
	}
	return out, nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // nearest rank
	return s[max(i-1, 0)]
}

// noopServer is an ext_authz server that always answers the same response.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
	gs   *grpc.Server
	addr string
}

func (s *noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.resp, nil
}

func startNoop(resp *authv3.CheckResponse) (*noopServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &noopServer{resp: resp, gs: grpc.NewServer(), addr: lis.Addr().String()}
	authv3.RegisterAuthorizationServer(s.gs, s)
	reflection.Register(s.gs) // ghz reads the service definition through reflection
	go func() { _ = s.gs.Serve(lis) }()
	return s, nil
}

func (s *noopServer) stop() { s.gs.Stop() }

// ghzRunner runs the pinned ghz binary and parses its JSON report.
type ghzRunner struct {
	bin, dir string
	verbose  bool
}

// report is the part of ghz's JSON report that the table needs.
type report struct {
	Count          uint64         `json:"count"`
	Total          time.Duration  `json:"total"`
	Rps            float64        `json:"rps"`
	Average        time.Duration  `json:"average"`
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	Details        []struct {
		Latency time.Duration `json:"latency"`
	} `json:"details"`
}

// pooled sums the rounds of one target.
type pooled struct {
	count uint64
	total time.Duration
	lats  []time.Duration
}

func (p *pooled) rps() float64 { return float64(p.count) / p.total.Seconds() }

func (p *pooled) p99() time.Duration { return percentile(p.lats, 99) }

// interleaved runs rounds of ghz against each target in turn and pools the
// results per target.
func (g *ghzRunner) interleaved(ctx context.Context, targets []string, call, data string, rounds int, args ...string) ([]*pooled, error) {
	out := make([]*pooled, len(targets))
	for i := range out {
		out[i] = &pooled{}
	}
	for range rounds {
		for i, t := range targets {
			r, err := g.run(ctx, t, call, data, args...)
			if err != nil {
				return nil, err
			}
			out[i].count += r.Count
			out[i].total += r.Total
			for _, d := range r.Details {
				out[i].lats = append(out[i].lats, d.Latency)
			}
		}
	}
	return out, nil
}

func (g *ghzRunner) run(ctx context.Context, target, call, data string, args ...string) (*report, error) {
	out := filepath.Join(g.dir, "ghz.json")
	full := append([]string{"--insecure", "--call", call, "-B", data, "-O", "json", "-o", out, "--connect-timeout", "5s", "-t", "5s"}, args...)
	full = append(full, target)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, g.bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ghz %s: %w\n%s", strings.Join(full, " "), err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("ghz report: %w", err)
	}
	if r.Count == 0 || r.StatusCodeDist["OK"] != int(r.Count) || len(r.ErrorDist) > 0 || len(r.Details) != int(r.Count) {
		return nil, fmt.Errorf("ghz %s %s: %d requests, statuses %v, errors %v", call, target, r.Count, r.StatusCodeDist, r.ErrorDist)
	}
	if g.verbose {
		logf("%s %s %s %v: %d req, %.0f req/s, avg %s", call, target, filepath.Base(data), args, r.Count, r.Rps, r.Average)
	}
	return &r, nil
}
