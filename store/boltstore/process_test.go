package boltstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// The test binary doubles as a child process: TestMain runs the role named
// in childEnv (with the database path in childPathEnv) instead of the tests.
const (
	childEnv     = "BOLTSTORE_TEST_CHILD"
	childPathEnv = "BOLTSTORE_TEST_PATH"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Getenv(childPathEnv)))
	}
	code := m.Run()
	cleanupFixtures()
	os.Exit(code)
}

func runChild(role, path string) int {
	var err error
	switch role {
	case "writer":
		err = childWriter(path)
	case "hold":
		err = childHold(path)
	case "fixture":
		err = buildFixture(path)
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// childHold opens the database and keeps it open until stdin closes.
func childHold(path string) error {
	s, err := Open(path)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.Close()
}

// ackLine is what the writer child prints once a write returned: the
// revision, the kind, the policy name and a hash of the stored policy.
func ackLine(rev int64, kind corsdv1.ChangeKind, name string, p *corsdv1.Policy) string {
	return fmt.Sprintf("ack %d %d %s %s\n", rev, kind, name, policyHash(p))
}

func policyHash(p *corsdv1.Policy) string {
	if p == nil {
		return "-"
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return "marshal-error"
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// childWriter writes from four goroutines until it is killed, printing an
// ack line after each write returns.
func childWriter(path string) error {
	s, err := Open(path)
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	ack := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = os.Stdout.WriteString(line) // one write per line: atomic on a pipe
	}
	ack("ready\n")
	ctx := store.WithActor(context.Background(), "child")
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			for i := 0; ; i++ {
				name := fmt.Sprintf("policies/g%d-%d", g, rng.IntN(5))
				_, err := s.Get(ctx, name)
				switch {
				case errors.Is(err, store.ErrNotFound):
					p := &corsdv1.Policy{Name: name, Description: fmt.Sprintf("created %d", i)}
					for j := range rng.IntN(20) {
						p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://o%d.example", j)})
					}
					got, err := s.Create(ctx, p)
					if err != nil {
						errs <- err
						return
					}
					ack(ackLine(got.GetRevision(), corsdv1.ChangeKind_CHANGE_KIND_CREATE, name, got))
				case err != nil:
					errs <- err
					return
				case rng.IntN(6) == 0:
					rev, err := s.Delete(ctx, name, store.Precondition{})
					if err != nil {
						errs <- err
						return
					}
					ack(ackLine(rev, corsdv1.ChangeKind_CHANGE_KIND_DELETE, name, nil))
				default:
					got, err := s.Update(ctx, name, store.Precondition{}, func(p *corsdv1.Policy) error {
						p.Description = fmt.Sprintf("update %d", i)
						p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://u%d.example", i)})
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					ack(ackLine(got.GetRevision(), corsdv1.ChangeKind_CHANGE_KIND_UPDATE, name, got))
				}
			}
		}()
	}
	return <-errs
}

type ack struct {
	rev  int64
	kind corsdv1.ChangeKind
	name string
	hash string
}

func parseAck(line string) (ack, bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "ack" {
		return ack{}, false
	}
	rev, err1 := strconv.ParseInt(f[1], 10, 64)
	kind, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return ack{}, false
	}
	return ack{rev: rev, kind: corsdv1.ChangeKind(kind), name: f[3], hash: f[4]}, true
}

func childCmd(t *testing.T, role, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childPathEnv+"="+path)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCrashDurability kills a writing child process at random moments and
// checks that every write it acknowledged survived, intact, in a file that
// passes the consistency check.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "corsd.db")
	rounds := 20
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var total int
	budget := time.Now().Add(40 * time.Second)
	for round := range rounds {
		if time.Now().After(budget) {
			t.Logf("stopping after %d rounds: time budget spent", round)
			break
		}
		acks := runAndKill(t, path, time.Duration(rng.IntN(150))*time.Millisecond)
		total += len(acks)
		checkFile(t, path)
		verifyAcks(t, path, acks)
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
	if total == 0 {
		t.Fatal("the children acknowledged no write")
	}
	t.Logf("%d acknowledged writes survived %d kills", total, rounds)
}

// runAndKill starts a writer child, lets it write for about d after it is
// ready, kills it with SIGKILL and returns the writes it acknowledged.
func runAndKill(t *testing.T, path string, d time.Duration) []ack {
	t.Helper()
	cmd := childCmd(t, "writer", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		acks  []ack
		ready = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // EOF (a partial last line is not an ack)
			}
			if line == "ready\n" {
				close(ready)
				continue
			}
			if a, ok := parseAck(line); ok {
				acks = append(acks, a)
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		_ = cmd.Wait()
		t.Fatal("the writer child exited before it was ready")
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the writer child did not get ready")
	}
	time.Sleep(d)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("writer child ended with %v, want killed by a signal", err)
	}
	return acks
}

// verifyAcks opens the database and checks every acknowledged write
// against the change log, and the policies against the replayed log.
func verifyAcks(t *testing.T, path string, acks []ack) {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open() after kill = %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx := t.Context()
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if a.rev > rev {
			t.Errorf("acknowledged revision %d is beyond the recovered revision %d", a.rev, rev)
			continue
		}
		cs, err := s.Changes(ctx, store.ChangesQuery{Since: a.rev - 1, Limit: 1})
		if err != nil || len(cs) != 1 || cs[0].GetRevision() != a.rev {
			t.Errorf("acknowledged revision %d: change log has %v, %v", a.rev, cs, err)
			continue
		}
		c := cs[0]
		if c.GetKind() != a.kind || c.GetName() != a.name || policyHash(c.GetAfter()) != a.hash || c.GetActor() != "child" {
			t.Errorf("acknowledged revision %d (%v %s %s) recovered as %v %s %s by %q", a.rev, a.kind, a.name, a.hash, c.GetKind(), c.GetName(), policyHash(c.GetAfter()), c.GetActor())
		}
	}
	// The policies are exactly what the log says.
	want := replay(t, s, rev)
	got := map[string]*corsdv1.Policy{}
	for _, p := range listAllPolicies(t, s) {
		got[p.GetName()] = p
	}
	if len(got) != len(want) {
		t.Errorf("%d policies stored, the change log yields %d", len(got), len(want))
	}
	for name, p := range want {
		if !proto.Equal(p, got[name]) {
			t.Errorf("policy %s differs from its last change", name)
		}
	}
}

// TestLockTimeout opens a file that a live child process holds.
func TestLockTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "corsd.db")
	cmd := childCmd(t, "hold", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	const timeout = 300 * time.Millisecond
	start := time.Now()
	s, err := Open(path, WithLockTimeout(timeout))
	elapsed := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open() of a file held by another process succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another corsd") {
		t.Errorf("Open() = %q, want ErrLocked naming %s and another corsd", err, path)
	}
	if elapsed < timeout/2 || elapsed > timeout+5*time.Second {
		t.Errorf("Open() failed after %s, want about %s", elapsed, timeout)
	}
	t.Logf("Open() of a locked file: %v after %s", err, elapsed.Round(time.Millisecond))

	// Once the holder closes, Open succeeds.
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder exited with %v", err)
	}
	s, err = Open(path, WithLockTimeout(timeout))
	if err != nil {
		t.Fatalf("Open() after the holder left = %v", err)
	}
	_ = s.Close()
}
