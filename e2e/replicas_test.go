package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/internal/corsdtest"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

var (
	haRounds = flag.Int("ha-rounds", 2, "kill rounds of TestReplicasHA (make ha runs 20)")
	// The target is 100 ms (make ha); the default only proves that a
	// write reaches the other replica through the watch, on a loaded
	// machine.
	propagationP99 = flag.Duration("propagation-p99", time.Second, "bound on write-on-A -> decision-on-B p99 (make ha: 100ms)")
)

const (
	haPolicy = "policies/acme"
	// fixedOrigin is trusted from the start: every ext_authz call asks
	// about it, so every answer must allow it.
	fixedOrigin = "https://fixed.acme.example"
)

// replicas are corsd processes sharing one etcd cluster.
type replicas struct {
	t    *testing.T
	bin  string
	args []string

	mu  sync.Mutex
	ds  []*corsdtest.Daemon
	all []*corsdtest.Daemon // every process started, killed ones too
}

// unmapped returns the "unmapped error" lines every replica process
// logged: errors that reached a caller as Internal.
func (rs *replicas) unmapped() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []string
	for _, d := range rs.all {
		for _, l := range d.Logs().Lines() {
			if l["msg"] == "unmapped error" {
				out = append(out, fmt.Sprintf("%s: %v", d.GRPCAddr, l["err"]))
			}
		}
	}
	return out
}

func startReplicas(t *testing.T, etcd *corsdtest.EtcdCluster, n int) *replicas {
	t.Helper()
	rs := &replicas{
		t:    t,
		bin:  corsdtest.MustBuild(t, "./cmd/corsd"),
		args: []string{"--store", etcd.StoreURL("corsd-" + strings.ToLower(t.Name()))},
	}
	for range n {
		rs.ds = append(rs.ds, corsdtest.MustStart(t, rs.bin, rs.args...))
	}
	rs.all = slices.Clone(rs.ds)
	return rs
}

func (rs *replicas) get(i int) *corsdtest.Daemon {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.ds[i]
}

// restart starts replica i again, on its ports, after it was killed:
// clients dialed to every replica find it back.
func (rs *replicas) restart(i int) {
	rs.t.Helper()
	old := rs.get(i)
	d := corsdtest.MustStart(rs.t, rs.bin, append(slices.Clone(rs.args), "--listen", old.GRPCAddr, "--http-listen", old.HTTPAddr)...)
	rs.mu.Lock()
	rs.ds[i] = d
	rs.all = append(rs.all, d)
	rs.mu.Unlock()
}

func (rs *replicas) addrs() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var a []string
	for _, d := range rs.ds {
		a = append(a, d.GRPCAddr)
	}
	return a
}

func dial(t *testing.T, target string) *client.Client {
	t.Helper()
	c, err := client.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// snapshotRevision reads corsd_snapshot_revision from a replica's /metrics.
func snapshotRevision(ctx context.Context, d *corsdtest.Daemon) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "corsd_snapshot_revision "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no corsd_snapshot_revision in %s/metrics", d.HTTPAddr)
}

// waitConverged waits until every replica's snapshot is at the same
// revision, and returns it.
func waitConverged(t *testing.T, rs *replicas) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var revs []int64
		for i := range rs.ds {
			r, err := snapshotRevision(t.Context(), rs.get(i))
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, r)
		}
		if slices.Min(revs) == slices.Max(revs) {
			return revs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge: snapshot revisions %v", revs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// extAuthzCheck asks one replica what Envoy would for a GET from origin.
func extAuthzCheck(ctx context.Context, ac authv3.AuthorizationClient, origin string) error {
	resp, err := ac.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method:  "GET",
		Host:    "api.acme.example",
		Path:    "/",
		Headers: map[string]string{":authority": "api.acme.example", ":method": "GET", ":path": "/", "origin": origin},
	}}}})
	if err != nil {
		return err
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		return fmt.Errorf("denied: %v", resp.GetStatus())
	}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		if strings.EqualFold(h.GetHeader().GetKey(), "access-control-allow-origin") && h.GetHeader().GetValue() == origin {
			return nil
		}
	}
	return fmt.Errorf("%s not allowed: %v", origin, resp.GetOkResponse())
}

// ackedWrite is an origin added to a policy and acknowledged.
type ackedWrite struct{ policy, origin string }

// createPolicy creates an empty policy through c, retrying while the store
// recovers from the previous round's kills.
func createPolicy(t *testing.T, c *client.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := c.Policies().CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: id, Policy: &corsdv1.Policy{}})
		cancel()
		if err == nil || status.Code(err) == codes.AlreadyExists { // an ambiguous earlier try was applied
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreatePolicy(%s): %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tally counts failures by reason.
type tally struct {
	mu    sync.Mutex
	calls int
	fails map[string]int
}

func (t *tally) add(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if err == nil {
		return
	}
	if t.fails == nil {
		t.fails = map[string]int{}
	}
	t.fails[status.Code(err).String()+": "+status.Convert(err).Message()]++
}

func (t *tally) failed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.fails {
		n += c
	}
	return n
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%d calls, failures %v", t.calls, t.fails)
}

// TestReplicasHA: three corsd replicas on a three-member etcd cluster, all
// separate processes. Admin writers go through different replicas while
// ext_authz calls go to every replica; each round SIGKILLs one replica and
// one etcd member (the leader every other round) at random moments, then
// restarts them. Afterwards every acknowledged write is present, every
// replica is at the same revision and decides the same, and no ext_authz
// call to a replica that was not killed failed.
func TestReplicasHA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and corsd processes")
	}
	etcd := corsdtest.MustStartEtcdCluster(t, 3)
	rs := startReplicas(t, etcd, 3)
	admin := dial(t, rs.get(0).GRPCAddr)
	if _, err := admin.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{
		Hosts:   []string{"api.acme.example"},
		Origins: []*corsdv1.OriginRule{{Pattern: fixedOrigin}},
	}}); err != nil {
		t.Fatalf("CreatePolicy: %v", err)
	}

	var (
		ackMu sync.Mutex
		acked []ackedWrite
	)
	writes, checks := &tally{}, &tally{}
	for round := range *haRounds {
		victim := rand.IntN(3)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var flowing sync.WaitGroup
		flowing.Add(3)
		for w := range 3 { // one writer through each replica
			c := dial(t, rs.get(w).GRPCAddr)
			// A policy per writer and round keeps each write small.
			pid := fmt.Sprintf("r%d-w%d", round, w)
			createPolicy(t, c, pid)
			name := "policies/" + pid
			wg.Go(func() {
				first := true
				for i := 0; ; i++ {
					select {
					case <-stop:
						if first {
							flowing.Done()
						}
						return
					default:
					}
					origin := fmt.Sprintf("https://r%d-w%d-%d.acme.example", round, w, i)
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					_, err := c.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: name, Origin: &corsdv1.OriginRule{Pattern: origin}})
					cancel()
					writes.add(err)
					if err == nil {
						ackMu.Lock()
						acked = append(acked, ackedWrite{policy: name, origin: origin})
						ackMu.Unlock()
						if first {
							first = false
							flowing.Done()
						}
					} else if w == victim {
						time.Sleep(10 * time.Millisecond) // its replica is gone
					}
				}
			})
		}
		for i := range 3 { // ext_authz callers of every surviving replica
			if i == victim {
				continue
			}
			cc, err := grpc.NewClient(rs.get(i).GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ac := authv3.NewAuthorizationClient(cc)
			wg.Go(func() {
				defer func() { _ = cc.Close() }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(t.Context(), time.Second)
					err := extAuthzCheck(ctx, ac, fixedOrigin)
					cancel()
					checks.add(err)
					if err != nil {
						t.Logf("round %d: ext_authz to surviving replica %d: %v", round, i, err)
					}
					time.Sleep(time.Millisecond)
				}
			})
		}

		// Kill at a random moment once every writer got a write through.
		flowed := make(chan struct{})
		go func() { flowing.Wait(); close(flowed) }()
		select {
		case <-flowed:
		case <-time.After(60 * time.Second):
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: a writer got no write through in 60s: %v", round, writes)
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		member := rand.IntN(3)
		leader, err := etcd.Leader(t.Context())
		if round%2 == 0 && err == nil {
			member = leader
		}
		role := "a follower"
		if member == leader {
			role = "the leader"
		}
		// The two kills in a random order, a random moment apart.
		kills := []func(){func() { rs.get(victim).Kill() }, func() { etcd.Members[member].Kill() }}
		rand.Shuffle(len(kills), func(i, j int) { kills[i], kills[j] = kills[j], kills[i] })
		kills[0]()
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		kills[1]()
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)

		if err := etcd.Members[member].Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := etcd.WaitHealthy(t.Context()); err != nil {
			t.Fatal(err)
		}
		rs.restart(victim)
		close(stop)
		wg.Wait()
		t.Logf("round %d: killed replica %d and etcd member %s (%s); writes so far: %v; ext_authz to survivors so far: %v", round, victim, etcd.Members[member].Name, role, writes, checks)
	}

	rev := waitConverged(t, rs)
	t.Logf("converged at revision %d; %d writes acknowledged", rev, len(acked))
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	if rev < int64(len(acked)) {
		t.Errorf("converged at revision %d, below the %d acknowledged writes", rev, len(acked))
	}
	for i := range 3 {
		c := dial(t, rs.get(i).GRPCAddr)
		all, err := c.ListAllPolicies(t.Context())
		if err != nil {
			t.Fatalf("replica %d: ListPolicies: %v", i, err)
		}
		stored := map[ackedWrite]bool{}
		for _, p := range all {
			for _, o := range p.GetOrigins() {
				stored[ackedWrite{policy: p.GetName(), origin: o.GetPattern()}] = true
			}
		}
		missing := 0
		for _, a := range acked {
			if !stored[a] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("replica %d: %d of %d acknowledged writes missing", i, missing, len(acked))
		}
		// Same decisions: a sample of acknowledged origins and one never
		// written, asked of every replica.
		sample := append([]ackedWrite{{policy: acked[0].policy, origin: "https://never.acme.example"}}, acked[:min(len(acked), 50)]...)
		for _, a := range sample {
			d, err := c.CheckOrigin(t.Context(), &corsdv1.CheckOriginRequest{Policy: a.policy, Method: "GET", Origin: a.origin})
			if err != nil {
				t.Fatalf("replica %d: CheckOrigin(%v): %v", i, a, err)
			}
			if want := stored[a]; d.GetAllowed() != want {
				t.Errorf("replica %d: CheckOrigin(%v).Allowed = %v, want %v", i, a, d.GetAllowed(), want)
			}
		}
	}
	t.Logf("writes: %v", writes)
	t.Logf("ext_authz to surviving replicas: %v", checks)
	if n := checks.failed(); n > 0 {
		t.Errorf("%d ext_authz calls to surviving replicas failed: %v", n, checks)
	}
	// A store failure must reach callers as Unavailable (retry), never as
	// Internal.
	for _, u := range rs.unmapped() {
		t.Errorf("a replica answered Internal: %s", u)
	}
}

// TestReplicasPropagation measures write-on-A → decision-on-B across
// processes: the time from AddOrigin on replica A (its send, and its
// acknowledgement) until replica B first allows the origin.
func TestReplicasPropagation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and corsd processes")
	}
	etcd := corsdtest.MustStartEtcdCluster(t, 3)
	rs := startReplicas(t, etcd, 2)
	a, b := dial(t, rs.get(0).GRPCAddr), dial(t, rs.get(1).GRPCAddr)
	if _, err := a.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{}}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var fromSend, fromAck []time.Duration
	for i := range n {
		origin := fmt.Sprintf("https://p%d.acme.example", i)
		start := time.Now()
		if _, err := a.Policies().AddOrigin(t.Context(), &corsdv1.AddOriginRequest{Policy: haPolicy, Origin: &corsdv1.OriginRule{Pattern: origin}}); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		for {
			d, err := b.CheckOrigin(t.Context(), &corsdv1.CheckOriginRequest{Policy: haPolicy, Method: "GET", Origin: origin})
			if err != nil {
				t.Fatal(err)
			}
			if d.GetAllowed() {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("replica B never allowed %s", origin)
			}
		}
		now := time.Now()
		fromSend, fromAck = append(fromSend, now.Sub(start)), append(fromAck, now.Sub(acked))
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(q*float64(len(s)-1))]
	}
	t.Logf("write on A -> decision on B, %d writes: from send p50 %v p99 %v max %v; from A's ack p50 %v p99 %v",
		n, p(fromSend, 0.5), p(fromSend, 0.99), slices.Max(fromSend), p(fromAck, 0.5), p(fromAck, 0.99))
	// The target is on propagation: from A's acknowledgement, when the
	// write is in etcd, to B's first decision with it. From the send it
	// also holds etcd's quorum write, which the disk's load dominates.
	if p99 := p(fromAck, 0.99); p99 > *propagationP99 {
		t.Errorf("write acknowledged on A -> decision on B p99 = %v, want < %v", p99, *propagationP99)
	}
}

// TestReplicasWatchResume: an SDK Watcher dialed to two replicas keeps its
// snapshot current while each replica in turn is killed: its stream
// resumes from its revision on the other one, with no resync.
func TestReplicasWatchResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and corsd processes")
	}
	etcd := corsdtest.MustStartEtcdCluster(t, 3)
	rs := startReplicas(t, etcd, 2)
	admin := dial(t, rs.get(0).GRPCAddr)
	if _, err := admin.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{}}); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := dial(t, strings.Join(rs.addrs(), ","))
	w, err := client.NewWatcher(c, []string{haPolicy}, client.WithLogger(logger), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	if err := w.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	for round, victim := range []int{0, 1, 0} {
		other := 1 - victim
		rs.get(victim).Kill()
		writer := dial(t, rs.get(other).GRPCAddr)
		origin := fmt.Sprintf("https://w%d.acme.example", round)
		if _, err := writer.Policies().AddOrigin(t.Context(), &corsdv1.AddOriginRequest{Policy: haPolicy, Origin: &corsdv1.OriginRule{Pattern: origin}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !w.Policy(haPolicy).Check(policy.Request{Method: "GET", Origin: origin}).Allowed {
			if time.Now().After(deadline) {
				logMu.Lock()
				t.Fatalf("round %d: the watcher never saw %s written through replica %d after replica %d died; logs:\n%s", round, origin, other, victim, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		rs.restart(victim)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logs.String(), "watch synced"); n != 1 {
		t.Errorf("the watcher synced %d times, want once (later streams resume from its revision)\n%s", n, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// httpGet returns the status and body of a GET to a replica's HTTP port.
func httpGet(ctx context.Context, d *corsdtest.Daemon, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTPAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestReplicasEtcdDown: with every etcd member killed, replicas keep
// deciding from their snapshot (CheckOrigin and ext_authz), writes fail
// with Unavailable, /readyz stays 200 and says the store is unreachable,
// corsd_store_reachable is 0 and the staleness grows, and a log line says
// so; once etcd is back, writes succeed and both replicas converge.
func TestReplicasEtcdDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and corsd processes")
	}
	etcd := corsdtest.MustStartEtcdCluster(t, 3)
	rs := startReplicas(t, etcd, 2)
	admin := dial(t, rs.get(0).GRPCAddr)
	if _, err := admin.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{
		Hosts:   []string{"api.acme.example"},
		Origins: []*corsdv1.OriginRule{{Pattern: fixedOrigin}},
	}}); err != nil {
		t.Fatal(err)
	}
	rev := waitConverged(t, rs)
	etcd.Kill()

	for i := range 2 {
		d := rs.get(i)
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body, err := httpGet(t.Context(), d, "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			if code == http.StatusOK && strings.Contains(body, "store unreachable") {
				if !strings.Contains(body, fmt.Sprintf("deciding from revision %d", rev)) {
					t.Errorf("replica %d: /readyz = %q, want the snapshot's revision %d", i, body, rev)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: /readyz = %d %q 20s after etcd died, want 200 naming the outage", i, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d.Logs().Find("store unreachable; deciding from the last snapshot, writes fail") == nil {
			t.Errorf("replica %d logged no outage line", i)
		}
		_, metrics, err := httpGet(t.Context(), d, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(metrics, "\ncorsd_store_reachable 0\n") {
			t.Errorf("replica %d: corsd_store_reachable is not 0 during the outage", i)
		}
		c := dial(t, d.GRPCAddr)
		dec, err := c.CheckOrigin(t.Context(), &corsdv1.CheckOriginRequest{Policy: haPolicy, Method: "GET", Origin: fixedOrigin})
		if err != nil || !dec.GetAllowed() {
			t.Errorf("replica %d: CheckOrigin during the outage = %v, %v; want allowed from the snapshot", i, dec, err)
		}
		cc, err := grpc.NewClient(d.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		if err := extAuthzCheck(t.Context(), authv3.NewAuthorizationClient(cc), fixedOrigin); err != nil {
			t.Errorf("replica %d: ext_authz during the outage: %v", i, err)
		}
		_ = cc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		_, err = c.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: haPolicy, Origin: &corsdv1.OriginRule{Pattern: "https://down.acme.example"}})
		cancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("replica %d: AddOrigin during the outage = %v, want Unavailable", i, err)
		}
	}

	if err := etcd.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := admin.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: haPolicy, Origin: &corsdv1.OriginRule{Pattern: "https://back.acme.example"}})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AddOrigin 30s after etcd came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := waitConverged(t, rs)
	if after <= rev {
		t.Errorf("revision after the outage = %d, want past %d", after, rev)
	}
	for i := range 2 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body, err := httpGet(t.Context(), rs.get(i), "/readyz")
			if err == nil && code == http.StatusOK && body == "ready\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: /readyz after the outage = %d %q %v, want 200 ready", i, code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
