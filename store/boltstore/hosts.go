package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// The hosts bucket indexes which policy governs each host (store.HostKey →
// policy name), so that a write checks host uniqueness inside its own
// transaction. It is derived from the policies and rebuilt by every Open,
// so that a file written by a corsd without it (or by an older corsd after
// a downgrade) is indexed correctly; it is not part of the schema.
var bucketHosts = []byte("hosts")

// rebuildHosts recreates the hosts index from the policies. Should two
// policies already share a host (files written before uniqueness was
// enforced in the store), the first by name owns it, and a write to the
// other that keeps the host is refused until one of them gives it up.
func rebuildHosts(tx *bolt.Tx) error {
	if tx.Bucket(bucketHosts) != nil {
		if err := tx.DeleteBucket(bucketHosts); err != nil {
			return fmt.Errorf("boltstore: rebuild the hosts index: %w", err)
		}
	}
	hosts, err := tx.CreateBucket(bucketHosts)
	if err != nil {
		return fmt.Errorf("boltstore: rebuild the hosts index: %w", err)
	}
	return tx.Bucket(bucketPolicies).ForEach(func(k, v []byte) error {
		p, err := decodePolicy(string(k), v)
		if err != nil {
			return err
		}
		for _, h := range p.GetHosts() {
			key := []byte(store.HostKey(h))
			if hosts.Get(key) == nil {
				if err := hosts.Put(key, k); err != nil {
					return fmt.Errorf("boltstore: rebuild the hosts index: %w", err)
				}
			}
		}
		return nil
	})
}

// checkHosts fails with a *store.HostConflictError when a host of p is
// governed by another policy than p itself.
func checkHosts(tx *bolt.Tx, p *corsdv1.Policy) error {
	hosts := tx.Bucket(bucketHosts)
	for i, h := range p.GetHosts() {
		if owner := hosts.Get([]byte(store.HostKey(h))); owner != nil && string(owner) != p.GetName() {
			return fmt.Errorf("boltstore: policy %q: %w", p.GetName(), &store.HostConflictError{Index: i, Host: h, Owner: string(owner)})
		}
	}
	return nil
}

// moveHosts updates the index for policy name, whose hosts go from before
// to after (either may be empty).
func moveHosts(tx *bolt.Tx, name string, before, after []string) error {
	hosts := tx.Bucket(bucketHosts)
	keep := make(map[string]bool, len(after))
	for _, h := range after {
		keep[store.HostKey(h)] = true
	}
	for _, h := range before {
		key := store.HostKey(h)
		if keep[key] {
			continue
		}
		if owner := hosts.Get([]byte(key)); owner != nil && string(owner) == name {
			if err := hosts.Delete([]byte(key)); err != nil {
				return fmt.Errorf("boltstore: hosts index: %w", err)
			}
		}
	}
	for key := range keep {
		if err := hosts.Put([]byte(key), []byte(name)); err != nil {
			return fmt.Errorf("boltstore: hosts index: %w", err)
		}
	}
	return nil
}
