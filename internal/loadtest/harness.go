package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/internal/corsdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

const (
	policyID      = "loadtest"
	policyName    = "policies/" + policyID
	trustedOrigin = "https://app.example.com"
	apiHost       = "api.example.com"

	serverCPU = "0" // taskset CPU list of the servers under -pin
	genCPU    = "1" // and of the generator
)

// kinds of request, in table order, with the payload each is made from.
var kinds = []struct{ name, payload string }{
	{"preflight", "preflight"},
	{"allowed", "allowed"},
	{"refused", "disallowed"},
	{"no_origin", "allowed"}, // the allowed request without its Origin
}

// target is one server under test.
type target struct {
	label  string
	pid    int
	addrs  map[string]string // kind -> host:port
	answer map[string][]byte // kind -> the answer's bytes as sent
	stop   func()
}

// harness holds the processes of one run.
type harness struct {
	o        *options
	self     string // this program, for the floor and gen children
	tmp      string
	requests map[string]string // kind -> file of the CheckRequest, binary
	corsds   []*target
	floors   []*target
	conn     *grpc.ClientConn // to the first corsd, for admin calls
}

func newHarness(ctx context.Context, root string, o *options) (_ *harness, err error) {
	h := &harness{o: o, requests: map[string]string{}}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if o.pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			return nil, errors.New("-pin needs taskset (util-linux); run with -pin=false")
		}
	}
	if h.tmp, err = os.MkdirTemp("", "corsd-loadtest-"); err != nil {
		return nil, err
	}
	reqs := map[string]*authv3.CheckRequest{}
	for _, k := range kinds {
		req := &authv3.CheckRequest{}
		b, err := os.ReadFile(filepath.Join(o.payloads, k.payload+".json"))
		if err != nil {
			return nil, err
		}
		if err := protojson.Unmarshal(b, req); err != nil {
			return nil, fmt.Errorf("payload %s: %w", k.payload, err)
		}
		if k.name == "no_origin" {
			hs := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
			delete(hs, "origin")
			delete(hs, "sec-fetch-mode")
		}
		reqs[k.name] = req
		if h.requests[k.name], err = writeProto(h.tmp, k.name+".request", req); err != nil {
			return nil, err
		}
	}

	logf("building corsd")
	bin := filepath.Join(h.tmp, "corsd")
	if err := corsdtest.Build(ctx, root, "./cmd/corsd", bin); err != nil {
		return nil, err
	}
	for i, rec := range o.records {
		t, err := h.startCorsd(ctx, bin, i, rec)
		if err != nil {
			return nil, err
		}
		h.corsds = append(h.corsds, t)
		if err := h.capture(ctx, t, reqs); err != nil {
			return nil, err
		}
	}
	// The floors answer what the first corsd answers.
	first := h.corsds[0]
	for _, k := range kinds {
		if err := os.WriteFile(answerPath(h.tmp, k.name), first.answer[k.name], 0o600); err != nil {
			return nil, err
		}
	}
	for _, mode := range []string{floorSmallest, floorReplay} {
		t, err := h.startFloor(mode)
		if err != nil {
			return nil, err
		}
		h.floors = append(h.floors, t)
	}
	if o.pin {
		// The Go runtime of each server notices its new affinity and sets
		// GOMAXPROCS to 1 within about a second.
		time.Sleep(2 * time.Second)
	}
	return h, nil
}

func (h *harness) close() {
	if h.conn != nil {
		_ = h.conn.Close()
	}
	for _, t := range append(h.floors, h.corsds...) {
		t.stop()
	}
	if h.tmp != "" {
		_ = os.RemoveAll(h.tmp)
	}
}

// startCorsd starts corsd (with --decision-record rec unless rec is ""),
// creates the policy and pins it.
func (h *harness) startCorsd(ctx context.Context, bin string, i int, rec string) (*target, error) {
	args := []string{"--db", filepath.Join(h.tmp, fmt.Sprintf("corsd%d.db", i)), "--log-level", "info"}
	label := "corsd"
	if rec != "" {
		args = append(args, "--decision-record", rec)
		label = "corsd, record " + rec
	}
	d, err := corsdtest.Start(ctx, bin, args...)
	if err != nil {
		return nil, err
	}
	t := &target{label: label, pid: d.PID(), stop: func() { _ = d.Stop(corsdtest.StopTimeout) }}
	if err := h.pin(t.pid); err != nil {
		t.stop()
		return nil, err
	}
	conn, err := grpc.NewClient(d.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.stop()
		return nil, err
	}
	if err := createPolicy(ctx, conn); err != nil {
		_ = conn.Close()
		t.stop()
		return nil, err
	}
	if h.conn == nil {
		h.conn = conn
	} else {
		_ = conn.Close()
	}
	t.addrs = map[string]string{}
	for _, k := range kinds {
		t.addrs[k.name] = d.GRPCAddr
	}
	logf("%s listening on %s (pid %d)", label, d.GRPCAddr, t.pid)
	return t, nil
}

// capture records t's answer to each request as sent, and checks that it
// is the decision the load test expects.
func (h *harness) capture(ctx context.Context, t *target, reqs map[string]*authv3.CheckRequest) error {
	conn, err := grpc.NewClient(t.addrs[kinds[0].name], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	t.answer = map[string][]byte{}
	for _, k := range kinds {
		var raw encoded
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := conn.Invoke(cctx, checkMethod, reqs[k.name], &raw)
		cancel()
		if err != nil {
			return fmt.Errorf("%s Check(%s): %w", t.label, k.name, err)
		}
		resp := &authv3.CheckResponse{}
		if err := proto.Unmarshal(raw, resp); err != nil {
			return err
		}
		if err := expectDecision(k.name, resp); err != nil {
			return fmt.Errorf("%s: %w", t.label, err)
		}
		t.answer[k.name] = raw
	}
	return nil
}

// expectDecision checks that resp is the answer the load test's policy
// gives to a request of kind.
func expectDecision(kind string, resp *authv3.CheckResponse) error {
	var acao bool
	for _, o := range append(resp.GetOkResponse().GetResponseHeadersToAdd(), resp.GetDeniedResponse().GetHeaders()...) {
		if o.GetHeader().GetKey() == "access-control-allow-origin" {
			acao = true
		}
	}
	denied := resp.GetDeniedResponse() != nil
	ok := false
	switch kind {
	case "preflight":
		ok = denied && resp.GetDeniedResponse().GetStatus().GetCode() == 204 && acao
	case "allowed":
		ok = !denied && resp.GetOkResponse() != nil && acao
	default:
		ok = !denied && resp.GetOkResponse() != nil && !acao
	}
	if !ok {
		return fmt.Errorf("unexpected answer to the %s request: %v", kind, resp)
	}
	return nil
}

// startFloor starts one floor process serving every kind.
func (h *harness) startFloor(mode string) (*target, error) {
	args := []string{"floor", "-mode", mode, "-answers", h.tmp}
	for _, k := range kinds {
		args = append(args, k.name)
	}
	cmd := exec.Command(h.self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{label: "floor: " + mode, pid: cmd.Process.Pid, stop: func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}}
	line := make(chan []byte, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Bytes()
		}
		close(line)
	}()
	select {
	case b, ok := <-line:
		if !ok || json.Unmarshal(b, &t.addrs) != nil || len(t.addrs) != len(kinds) {
			t.stop()
			return nil, fmt.Errorf("floor %s did not report its addresses (%q)", mode, b)
		}
	case <-time.After(30 * time.Second):
		t.stop()
		return nil, fmt.Errorf("floor %s did not start", mode)
	}
	if err := h.pin(t.pid); err != nil {
		t.stop()
		return nil, err
	}
	t.answer = map[string][]byte{}
	for _, k := range kinds {
		b := h.corsds[0].answer[k.name]
		if mode == floorSmallest {
			c := &authv3.CheckResponse{}
			if err := proto.Unmarshal(b, c); err != nil {
				t.stop()
				return nil, err
			}
			s, err := smallestAnswer(c)
			if err != nil {
				t.stop()
				return nil, err
			}
			if b, err = proto.Marshal(s); err != nil {
				t.stop()
				return nil, err
			}
		}
		t.answer[k.name] = b
	}
	logf("%s listening (pid %d)", t.label, t.pid)
	return t, nil
}

// pin moves every thread of pid to the servers' CPU. Threads the process
// creates later inherit it, and the Go runtime follows the new affinity
// with GOMAXPROCS.
func (h *harness) pin(pid int) error {
	if !h.o.pin {
		return nil
	}
	if b, err := exec.Command("taskset", "-a", "-p", "-c", serverCPU, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("taskset: %w\n%s", err, b)
	}
	return nil
}

// gen runs one generator child against every target, for kind's request
// at rate, and returns one result per target, in order.
func (h *harness) gen(ctx context.Context, targets []*target, kind string, rate int) ([]*genResult, error) {
	args := []string{"gen", "-request", h.requests[kind], "-rate", strconv.Itoa(rate), "-slice", h.o.slice.String(),
		"-cycles", strconv.Itoa(h.o.cycles), "-warmup", h.o.warmup.String(), "-workers", strconv.Itoa(h.o.workers)}
	for _, t := range targets {
		args = append(args, "-target", t.addrs[kind]+","+strconv.Itoa(t.pid))
	}
	name := h.self
	if h.o.pin {
		args = append([]string{"-c", genCPU, h.self}, args...)
		name = "taskset"
	}
	bound := time.Duration(len(targets)) * (h.o.warmup + time.Duration(h.o.cycles)*h.o.slice)
	cctx, cancel := context.WithTimeout(ctx, 4*bound+2*time.Minute) // a starved generator falls behind its slots
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gen %s at %d/s: %w", kind, rate, err)
	}
	var rs []*genResult
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("gen %s at %d/s: %w", kind, rate, err)
	}
	if len(rs) != len(targets) {
		return nil, fmt.Errorf("gen %s at %d/s: %d results for %d servers", kind, rate, len(rs), len(targets))
	}
	if h.o.verbose {
		for i, r := range rs {
			logf("%s %s %d/s: %d calls, server %v, gen %v, late %d", targets[i].label, kind, rate, r.Calls, r.ServerCPU, r.GenCPU, r.Late)
		}
	}
	return rs, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
}

func writeProto(dir, name string, m proto.Message) (string, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, b, 0o600)
}

// createPolicy creates the load-test policy and waits until decisions see
// it.
func createPolicy(ctx context.Context, conn *grpc.ClientConn) error {
	admin := corsdv1.NewPolicyServiceClient(conn)
	decisions := corsdv1.NewDecisionServiceClient(conn)
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
func propagation(ctx context.Context, conn *grpc.ClientConn, n int) ([]time.Duration, error) {
	admin := corsdv1.NewPolicyServiceClient(conn)
	decisions := corsdv1.NewDecisionServiceClient(conn)
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
