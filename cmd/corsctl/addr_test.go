package main

import (
	"net"
	"strings"
	"testing"
)

// TestAddrReplicas: --addr takes a list of replicas; a command succeeds
// while one of them is down, and fails with the usual message when all are.
func TestAddrReplicas(t *testing.T) {
	live := startCorsd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()

	if r := corsctl(t, "--addr", live, "policies", "create", "-f", "testdata/acme.yaml"); r.code != exitOK {
		t.Fatalf("create: exit %d\n%s", r.code, r.stderr)
	}
	for _, addr := range []string{dead + "," + live, live + "," + dead} {
		for range 3 { // a fresh connection each time: whichever replica round_robin tries first
			r := corsctl(t, "--addr", addr, "--timeout", "5s", "policies", "list")
			if r.code != exitOK || !strings.Contains(r.stdout, "policies/acme") {
				t.Fatalf("corsctl --addr %s policies list: exit %d\nstdout:\n%s\nstderr:\n%s", addr, r.code, r.stdout, r.stderr)
			}
		}
	}
	r := corsctl(t, "--addr", dead+","+dead[:strings.LastIndex(dead, ":")]+":1", "--timeout", "2s", "policies", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "cannot reach corsd") || strings.Contains(r.stderr, "max retries") {
		t.Errorf("all replicas down: exit %d\n%s\nwant exit 1 and cannot reach corsd, without gRPC's retry prefix", r.code, r.stderr)
	}
}
