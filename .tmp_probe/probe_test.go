package probe

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestProbe(t *testing.T) {
	db, _ := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0600, nil)
	db.MaxBatchDelay = 200 * time.Microsecond
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	var inUpdate atomic.Int64
	for r := 0; r < 3; r++ {
		start := time.Now()
		for i := 0; i < 300; i++ {
			db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), make([]byte, 500)) })
		}
		single := time.Since(start) / 300
		var wg sync.WaitGroup
		var n atomic.Int64
		tx0 := txid(db)
		inUpdate.Store(0)
		start = time.Now()
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					db.Batch(func(tx *bolt.Tx) error {
						return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint("k", g)), make([]byte, 500))
					})
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		txs := txid(db) - tx0
		t.Logf("single %v/commit (%.0f/s); 16 writers %.0f/s, %.1f writes/tx, %v per tx", single, float64(time.Second)/float64(single), float64(n.Load())/el.Seconds(), float64(n.Load())/float64(txs), el/time.Duration(txs))
	}
}

func txid(db *bolt.DB) int { tx, _ := db.Begin(false); defer tx.Rollback(); return tx.ID() }
