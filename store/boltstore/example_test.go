package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
)

// Open a store, create a policy and update it with its etag, as an admin
// API does for a read-modify-write.
func Example() {
	dir, _ := os.MkdirTemp("", "corsd-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := boltstore.Open(filepath.Join(dir, "corsd.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := store.WithActor(context.Background(), "alice")

	p, err := s.Create(ctx, &corsdv1.Policy{Name: "policies/acme"})
	if err != nil {
		log.Fatal(err)
	}
	addOrigin := func(p *corsdv1.Policy) error {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://app.acme.example"})
		return nil
	}
	p, err = s.Update(ctx, "policies/acme", store.Precondition{Etag: p.GetEtag()}, addOrigin)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.GetName(), "revision", p.GetRevision(), "origins", len(p.GetOrigins()))
	// Output: policies/acme revision 2 origins 1
}

// The classic mistake: updating with an etag read before someone else's
// write. The store refuses instead of losing that write; re-read and retry.
func Example_staleEtag() {
	dir, _ := os.MkdirTemp("", "corsd-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := boltstore.Open(filepath.Join(dir, "corsd.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()

	read, _ := s.Create(ctx, &corsdv1.Policy{Name: "policies/acme"})
	// Someone else writes in between.
	_, _ = s.Update(ctx, "policies/acme", store.Precondition{}, func(p *corsdv1.Policy) error {
		p.Description = "changed elsewhere"
		return nil
	})
	_, err = s.Update(ctx, "policies/acme", store.Precondition{Etag: read.GetEtag()}, func(p *corsdv1.Policy) error {
		p.Description = "mine"
		return nil
	})
	fmt.Println(errors.Is(err, store.ErrConflict))
	// Output: true
}
