package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corsd/corsd/internal/etcdtest"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// BenchmarkReplicaPropagation measures write-on-A -> decision-on-B between
// two servers over one etcd member (fsync on): each iteration adds an
// origin through A and polls B until it allows it. Reported: p50 and p99
// from A's acknowledgment (propagation) and from the write's start (a
// write's whole path), in milliseconds.
func BenchmarkReplicaPropagation(b *testing.B) {
	etcd := etcdtest.Start(b, etcdtest.Durable())
	a, r := replicaPair(b, etcd)
	a.create("acme", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}})
	var fromAck, fromSend []time.Duration
	n := 0
	for b.Loop() {
		n++
		ack, send := propagation(b, a, r, 1, n)
		fromAck, fromSend = append(fromAck, ack...), append(fromSend, send...)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(fromAck, 0.5)), "p50-ack-ms")
	b.ReportMetric(ms(percentile(fromAck, 0.99)), "p99-ack-ms")
	b.ReportMetric(ms(percentile(fromSend, 0.5)), "p50-send-ms")
	b.ReportMetric(ms(percentile(fromSend, 0.99)), "p99-send-ms")
}

// BenchmarkDecideByBackend decides the same request on a server over bbolt
// and on one over etcd, in the same run: decisions read the in-memory
// snapshot only, so the backend must not change their cost.
func BenchmarkDecideByBackend(b *testing.B) {
	etcd := etcdtest.Start(b)
	_, overEtcd := replicaPair(b, etcd)
	servers := []struct {
		name string
		e    *env
	}{
		{"bolt", newEnv(b, envConfig{opts: []Option{WithTokens(testTokens...)}})},
		{"etcd", overEtcd},
	}
	req := policy.Request{Method: "GET", Host: "api50.example.com", Origin: "https://app.example.com"}
	for _, sv := range servers {
		for i := range 100 {
			sv.e.create(fmt.Sprintf("p%d", i), &corsdv1.Policy{
				Hosts:   []string{fmt.Sprintf("api%d.example.com", i)},
				Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com", AllowCredentials: true}},
			})
		}
	}
	for _, sv := range servers {
		b.Run(sv.name, func(b *testing.B) {
			ctx := context.Background()
			// The etcd replica learns of the policies through its watch.
			deadline := time.Now().Add(10 * time.Second)
			for d, _ := sv.e.srv.Decide(ctx, "", req); !d.Allowed; d, _ = sv.e.srv.Decide(ctx, "", req) {
				if time.Now().After(deadline) {
					b.Fatal("policies not loaded")
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d, err := sv.e.srv.Decide(ctx, "", req); err != nil || !d.Allowed {
					b.Fatalf("Decide = %v, %v", d.Reason, err)
				}
			}
		})
	}
}
