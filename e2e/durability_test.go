package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/internal/corsdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// TestKill9KeepsAcknowledgedWrites: corsd acknowledges an admin write only
// once it is durable. Writers add origins through the real binary until
// corsd is killed with SIGKILL at a random moment; after a restart on the
// same file every acknowledged origin is there, in every round.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts corsd")
	}
	bin := corsdtest.MustBuild(t, "./cmd/corsd")
	db := filepath.Join(t.TempDir(), "corsd.db")
	const (
		rounds  = 5
		writers = 4
	)
	acked := map[string]bool{}
	for round := range rounds {
		d := corsdtest.MustStart(t, bin, "--db", db)
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if _, err := c.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{}}); err != nil {
				t.Fatalf("CreatePolicy: %v", err)
			}
		}
		var (
			mu sync.Mutex
			wg sync.WaitGroup
			n  int
		)
		for w := range writers {
			wg.Go(func() {
				for i := 0; ; i++ {
					origin := fmt.Sprintf("https://r%d-w%d-%d.example", round, w, i)
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					_, err := c.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: origin}})
					cancel()
					if err != nil {
						return // corsd is gone
					}
					mu.Lock()
					acked[origin] = true
					n++
					mu.Unlock()
				}
			})
		}
		// Kill at a random moment once writes flow, however slow the machine.
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			flowing := n > 0
			mu.Unlock()
			if flowing || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		d.Kill()
		wg.Wait()
		_ = c.Close()
		t.Logf("round %d: %d writes acknowledged before SIGKILL", round, n)
		if n == 0 {
			t.Fatalf("round %d: no write was acknowledged before SIGKILL", round)
		}
	}

	d := corsdtest.MustStart(t, bin, "--db", db)
	c, err := client.Dial(d.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	resp, err := c.Policies().GetPolicy(t.Context(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	if err != nil {
		t.Fatalf("GetPolicy after the last restart: %v", err)
	}
	stored := map[string]bool{}
	for _, o := range resp.GetPolicy().GetOrigins() {
		stored[o.GetPattern()] = true
	}
	missing := 0
	for o := range acked {
		if !stored[o] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged origin %s is gone after SIGKILL", o)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes lost", missing, len(acked))
	}
	stopClean(t, d)
}
