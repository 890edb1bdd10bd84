package boltstore

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

func benchPolicy(name string, origins int) *corsdv1.Policy {
	p := &corsdv1.Policy{
		Name:           name,
		Description:    "benchmark policy",
		AllowedMethods: []string{"GET", "POST", "PUT", "DELETE"},
		MaxAge:         durationpb.New(10 * time.Minute),
	}
	for j := range origins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://app%d.example.com", j), AllowCredentials: true})
	}
	return p
}

// BenchmarkCreate_1writer is the commit rate of one writer: one fsync'ed
// transaction per write.
func BenchmarkCreate_1writer(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		if _, err := s.Create(ctx, benchPolicy(fmt.Sprintf("policies/b%09d", n), 10)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportWrites(b, n, time.Since(start), cpuTime()-cpu0)
}

// reportWrites reports the commit rate and the CPU time per write, which,
// unlike the rate, does not depend on how busy the machine and its disk are.
func reportWrites(b *testing.B, n int, elapsed, cpu time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/write")
}

// BenchmarkUpdate_1writer updates one policy from one goroutine.
func BenchmarkUpdate_1writer(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	if _, err := s.Create(ctx, benchPolicy("policies/b", 10)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		if _, err := s.Update(ctx, "policies/b", store.Precondition{}, func(p *corsdv1.Policy) error {
			p.Description = strconv.Itoa(n)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportWrites(b, n, time.Since(start), cpuTime()-cpu0)
}

// BenchmarkUpdate_16writers updates 16 policies from 16 goroutines: the
// writes share transactions and fsyncs.
func BenchmarkUpdate_16writers(b *testing.B) {
	const writers = 16
	s := openTemp(b)
	ctx := context.Background()
	for i := range writers {
		if _, err := s.Create(ctx, benchPolicy(fmt.Sprintf("policies/b%02d", i), 10)); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int32
	b.ReportAllocs()
	b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	tx0, write0 := txID(b, s), writeTime(s)
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		name := fmt.Sprintf("policies/b%02d", next.Add(1)%writers)
		i := 0
		for pb.Next() {
			if _, err := s.Update(ctx, name, store.Precondition{}, func(p *corsdv1.Policy) error {
				p.Description = strconv.Itoa(i)
				return nil
			}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	reportWrites(b, b.N, time.Since(start), cpuTime()-cpu0)
	txs := float64(txID(b, s) - tx0)
	b.ReportMetric(float64(b.N)/txs, "writes/tx")
	// Time spent writing and syncing pages, per transaction: the rest of a
	// transaction's share of the wall time is waiting to be scheduled.
	b.ReportMetric(float64((writeTime(s)-write0).Microseconds())/txs, "disk-µs/tx")
	b.ReportMetric(float64(next.Load()), "writers")
}

// writeTime is the time bbolt spent writing and syncing pages so far.
func writeTime(s *Store) time.Duration {
	st := s.db.Stats()
	return st.TxStats.GetWriteTime()
}

// txID is the id of the last committed bbolt transaction: the number of
// write transactions so far.
func txID(b *testing.B, s *Store) int {
	tx, err := s.db.Begin(false)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	return tx.ID()
}

// BenchmarkWriteScaling measures how the commit rate scales from 1 to 16
// writers on a machine whose disk and CPU are shared: each iteration runs
// one writer for 100 ms, then 16 writers for 100 ms, so that both see the
// same conditions, and the ratio of the two rates is reported.
func BenchmarkWriteScaling(b *testing.B) {
	const writers, phase = 16, 100 * time.Millisecond
	s := openTemp(b)
	ctx := context.Background()
	for i := range writers {
		if _, err := s.Create(ctx, benchPolicy(fmt.Sprintf("policies/b%02d", i), 10)); err != nil {
			b.Fatal(err)
		}
	}
	// run has n goroutines update their own policy for about d and returns
	// the number of commits and the time they took.
	run := func(n int, d time.Duration) (int64, time.Duration) {
		var (
			wg      sync.WaitGroup
			commits atomic.Int64
		)
		start := time.Now()
		deadline := start.Add(d)
		for g := range n {
			wg.Go(func() {
				name := fmt.Sprintf("policies/b%02d", g)
				for i := 0; time.Now().Before(deadline); i++ {
					if _, err := s.Update(ctx, name, store.Precondition{}, func(p *corsdv1.Policy) error {
						p.Description = strconv.Itoa(i)
						return nil
					}); err != nil {
						b.Error(err)
						return
					}
					commits.Add(1)
				}
			})
		}
		wg.Wait()
		return commits.Load(), time.Since(start)
	}
	var (
		one, many       int64
		oneDur, manyDur time.Duration
	)
	for b.Loop() {
		n, d := run(1, phase)
		one, oneDur = one+n, oneDur+d
		n, d = run(writers, phase)
		many, manyDur = many+n, manyDur+d
	}
	oneRate, manyRate := float64(one)/oneDur.Seconds(), float64(many)/manyDur.Seconds()
	b.ReportMetric(oneRate, "1writer-commits/s")
	b.ReportMetric(manyRate, "16writers-commits/s")
	b.ReportMetric(manyRate/oneRate, "x-speedup")
}

// Start-up fixture: 100,000 policies with 10 origin rules each.
const (
	fixturePolicies = 100_000
	fixtureOrigins  = 10
)

var fixture struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// fixturePath builds the start-up fixture once per test binary run, in a
// child process so that building it does not count in this process's peak
// memory.
func fixturePath(b *testing.B) string {
	b.Helper()
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "boltstore-bench-")
		if fixture.err != nil {
			return
		}
		fixture.path = filepath.Join(fixture.dir, "startup.db")
		start := time.Now()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=fixture", childPathEnv+"="+fixture.path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			fixture.err = fmt.Errorf("build fixture: %w: %s", err, out)
			return
		}
		if fi, err := os.Stat(fixture.path); err == nil {
			b.Logf("fixture: %d policies, %d origin rules, %.0f MiB, built in %s",
				fixturePolicies, fixturePolicies*fixtureOrigins, float64(fi.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
		}
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture.path
}

func cleanupFixtures() {
	if fixture.dir != "" {
		_ = os.RemoveAll(fixture.dir)
	}
}

// buildFixture writes the start-up fixture with one bulk transaction, in
// the layout Open expects (no change log: it was compacted).
func buildFixture(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return err
	}
	now := timestamppb.Now()
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := prepare(tx, path, migrations); err != nil {
			return err
		}
		b := tx.Bucket(bucketPolicies)
		b.FillPercent = 1 // keys arrive in order
		for i := range fixturePolicies {
			p := &corsdv1.Policy{
				Name:           fmt.Sprintf("policies/tenant-%06d", i),
				Description:    "start-up benchmark",
				AllowedMethods: []string{"GET", "POST", "PUT", "DELETE"},
				Hosts:          []string{fmt.Sprintf("api.tenant-%06d.example.com", i)},
				MaxAge:         durationpb.New(10 * time.Minute),
				Mode:           corsdv1.Mode_MODE_ENFORCE,
				Revision:       int64(i + 1),
				Etag:           etag(int64(i + 1)),
				CreateTime:     now,
				UpdateTime:     now,
			}
			for j := range fixtureOrigins - 1 {
				p.Origins = append(p.Origins, &corsdv1.OriginRule{
					Pattern:          fmt.Sprintf("https://app%d.tenant-%06d.example.com", j, i),
					AllowCredentials: j%2 == 0,
				})
			}
			p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://*.preview.tenant-%06d.example.com", i)})
			if _, err := putPolicy(b, p); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyRevision, u64(fixturePolicies)); err != nil {
			return err
		}
		return meta.Put(keyCompacted, u64(fixturePolicies))
	})
	if err != nil {
		_ = db.Close()
		return err
	}
	if err := db.Sync(); err != nil {
		_ = db.Close()
		return err
	}
	return db.Close()
}

// BenchmarkStartupLoad opens a store of 100,000 policies (1,000,000 origin
// rules) and compiles every policy, as corsd does at start-up: one
// goroutine pages through the store while GOMAXPROCS goroutines compile. It
// reports the wall and CPU time per load and the process's resident memory
// after it (peak and current), with the compiled policies alive.
func BenchmarkStartupLoad(b *testing.B) {
	path := fixturePath(b)
	var (
		loads    int
		elapsed  time.Duration
		cpu      time.Duration
		compiled map[string]*policy.Policy
	)
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		start, cpu0 := time.Now(), cpuTime()
		var err error
		compiled, err = loadAndCompile(path)
		if err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		loads++
	}
	hwm, rss := procStatus("VmHWM"), procStatus("VmRSS")
	runtime.KeepAlive(compiled)
	b.ReportMetric(elapsed.Seconds()/float64(loads), "s/load")
	b.ReportMetric(cpu.Seconds()/float64(loads), "cpu-s/load")
	b.ReportMetric(hwm/1024, "MiB-peak-RSS")
	b.ReportMetric(rss/1024, "MiB-RSS")
}

// BenchmarkStartupList is the store's share of BenchmarkStartupLoad: open
// the store and decode every policy, without compiling.
func BenchmarkStartupList(b *testing.B) {
	path := fixturePath(b)
	ctx := context.Background()
	var elapsed, cpu time.Duration
	loads := 0
	b.ReportAllocs()
	for b.Loop() {
		start, cpu0 := time.Now(), cpuTime()
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		n, token := 0, ""
		for {
			page, err := s.List(ctx, 1000, token)
			if err != nil {
				b.Fatal(err)
			}
			n += len(page.Policies)
			if token = page.NextPageToken; token == "" {
				break
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if n != fixturePolicies {
			b.Fatalf("listed %d policies", n)
		}
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		loads++
	}
	b.ReportMetric(elapsed.Seconds()/float64(loads), "s/load")
	b.ReportMetric(cpu.Seconds()/float64(loads), "cpu-s/load")
}

func loadAndCompile(path string) (map[string]*policy.Policy, error) {
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = s.Close() }()
	pages := make(chan []*corsdv1.Policy, 4)
	type result struct {
		compiled map[string]*policy.Policy
		rules    int
		err      error
	}
	results := make(chan result)
	workers := runtime.GOMAXPROCS(0)
	for range workers {
		go func() {
			r := result{compiled: make(map[string]*policy.Policy, fixturePolicies/workers)}
			for page := range pages {
				for _, p := range page {
					c, err := policypb.Compile(p)
					if err != nil && r.err == nil {
						r.err = fmt.Errorf("compile %s: %w", p.GetName(), err)
					}
					r.compiled[p.GetName()] = c
					r.rules += len(p.GetOrigins())
				}
			}
			results <- r
		}()
	}
	token := ""
	for {
		page, err := s.List(ctx, 1000, token)
		if err != nil {
			close(pages)
			return nil, err
		}
		pages <- page.Policies
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	close(pages)
	all := make(map[string]*policy.Policy, fixturePolicies)
	rules := 0
	for range workers {
		r := <-results
		if r.err != nil {
			err = r.err
		}
		maps.Copy(all, r.compiled)
		rules += r.rules
	}
	if err != nil {
		return nil, err
	}
	if len(all) != fixturePolicies || rules != fixturePolicies*fixtureOrigins {
		return nil, fmt.Errorf("loaded %d policies, %d rules", len(all), rules)
	}
	return all, nil
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus returns a kB field of /proc/self/status (0 when unavailable).
func procStatus(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v
		}
	}
	return 0
}
