package server

import (
	"bufio"

	"google.golang.org/grpc"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// backupChunk is the size of one BackupDatabaseResponse: large enough to
// keep per-message overhead low, far below the default 4 MiB receive limit.
const backupChunk = 256 << 10

// BackupDatabase streams a consistent copy of the database file.
func (ps *policyService) BackupDatabase(_ *corsdv1.BackupDatabaseRequest, stream grpc.ServerStreamingServer[corsdv1.BackupDatabaseResponse]) error {
	ctx := stream.Context()
	// Send marshals before returning, so the buffer can be reused.
	bw := bufio.NewWriterSize(sendWriter(func(p []byte) error {
		return stream.Send(&corsdv1.BackupDatabaseResponse{Data: p})
	}), backupChunk)
	if _, err := ps.s.store.Backup(ctx, bw); err != nil {
		return toStatus(ctx, err)
	}
	return toStatus(ctx, bw.Flush())
}

// sendWriter adapts a send function to io.Writer.
type sendWriter func(p []byte) error

func (f sendWriter) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
