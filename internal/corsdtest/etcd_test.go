package corsdtest

import (
	"context"
	"testing"
	"time"
)

// TestEtcdCluster: three etcdnode processes form a cluster; killing the
// leader with SIGKILL elects another among the survivors, which still
// serve what was written; the killed member rejoins on its data.
func TestEtcdCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdnode and starts three processes")
	}
	c := MustStartEtcdCluster(t, 3)
	ctx := t.Context()
	cli, err := newClient(c.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	put := func(k, v string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Put(pctx, k, v); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
	}
	get := func(k string) string {
		t.Helper()
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := cli.Get(gctx, k)
		if err != nil {
			t.Fatalf("Get(%s): %v", k, err)
		}
		if len(resp.Kvs) != 1 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}
	put("before", "1")

	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Members[old].Kill()
	if c.Members[old].Running() {
		t.Fatalf("member %s runs after Kill", c.Members[old].Name)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if leader == old {
		t.Fatalf("leader after killing %s is still %s", c.Members[old].Name, c.Members[leader].Name)
	}
	if got := get("before"); got != "1" {
		t.Errorf("after the leader's SIGKILL, before = %q, want 1", got)
	}
	put("during", "2")

	if err := c.Members[old].Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Members[old].Start(ctx); err == nil {
		t.Error("a second Start of a running member succeeded")
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted member caught up: a read through it alone sees the
	// write it missed.
	one, err := newClient(c.Members[old].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = one.Close() }()
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := one.Get(gctx, "during")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Errorf("Get(during) through the restarted member = %v, %v; want 2", resp, err)
	}
	// The whole cluster down, then back on its data.
	c.Kill()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get("during"); got != "2" {
		t.Errorf("after a restart of the whole cluster, during = %q, want 2", got)
	}
	if got := c.StoreURL("corsd"); got != "etcd://"+c.Members[0].ClientAddr+","+c.Members[1].ClientAddr+","+c.Members[2].ClientAddr+"/corsd" {
		t.Errorf("StoreURL = %q", got)
	}
}
