package etcdstore

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/corsd/corsd/internal/etcdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
)

// BenchmarkUpdate measures one writer's update latency on both backends in
// the same run: bbolt (fsync per commit) and etcd (one member on loopback,
// fsync on, as in production). Each update is a read-modify-write of a
// policy with 20 origins and a host, recorded in the change log.
func BenchmarkUpdate(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"bolt", func(b *testing.B) store.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "corsd.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"etcd", func(b *testing.B) store.Store {
			srv := etcdtest.Start(b, etcdtest.Durable())
			s, err := Open(b.Context(), []string{srv.Endpoint}, newPrefix())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			defer func() { _ = s.Close() }()
			ctx := b.Context()
			p := &corsdv1.Policy{Name: "policies/bench", Hosts: []string{"bench.example.com"}}
			for i := range 20 {
				p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://o" + strconv.Itoa(i) + ".example.com"})
			}
			if _, err := s.Create(ctx, p); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Update(ctx, "policies/bench", store.Precondition{}, func(p *corsdv1.Policy) error {
					p.Description = strconv.Itoa(i)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
