package server

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store/boltstore"
)

// TestBackupDatabase restores the streamed copy into a new store and finds
// the policies written before the backup.
func TestBackupDatabase(t *testing.T) {
	e := newTokenEnv(t)
	want := e.create("acme", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}})

	stream, err := e.policy.BackupDatabase(e.admin(), &corsdv1.BackupDatabaseRequest{})
	if err != nil {
		t.Fatalf("BackupDatabase: %v", err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if len(resp.GetData()) == 0 || len(resp.GetData()) > backupChunk {
			t.Fatalf("chunk of %d bytes, want 1..%d", len(resp.GetData()), backupChunk)
		}
		chunks++
		if _, err := f.Write(resp.GetData()); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if chunks == 0 {
		t.Fatal("BackupDatabase sent no data")
	}

	// The backup is backend-neutral: restore it through the Store interface
	// into a new, empty store.
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "restored.db"))
	if err != nil {
		t.Fatalf("Open(restored): %v", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close(restored): %v", err)
		}
	}()
	rf, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rf.Close() }()
	if err := st.Restore(context.Background(), rf); err != nil {
		t.Fatalf("Restore(backup): %v", err)
	}
	got, err := st.Get(context.Background(), "policies/acme")
	if err != nil {
		t.Fatalf("Get from the restored copy: %v", err)
	}
	if got.GetEtag() != want.GetEtag() || got.GetOrigins()[0].GetPattern() != "https://app.example.com" {
		t.Errorf("restored policy = %v, want %v", got, want)
	}
}

// TestBackupDatabaseNeedsRead refuses a token without the read scope.
func TestBackupDatabaseNeedsRead(t *testing.T) {
	e := newTokenEnv(t)
	stream, err := e.policy.BackupDatabase(as(checkerToken), &corsdv1.BackupDatabaseRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
}
