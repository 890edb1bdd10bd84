package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// fakeStream carries a method name in a context, as gRPC's own does.
type fakeStream struct{ method string }

func (s fakeStream) Method() string             { return s.method }
func (fakeStream) SetHeader(metadata.MD) error  { return nil }
func (fakeStream) SendHeader(metadata.MD) error { return nil }
func (fakeStream) SetTrailer(metadata.MD) error { return nil }

// TestToStatusMessages checks that every mapped error becomes a sentence
// for the caller and that the error's own text (backend names, paths) never
// reaches it.
func TestToStatusMessages(t *testing.T) {
	const secret = `boltstore: /var/lib/corsd/corsd.db: policy "policies/nosuch"`
	leak := func(err error) error { return fmt.Errorf("%s: %w", secret, err) }
	tests := []struct {
		name   string
		method string
		err    error
		code   codes.Code
		msg    string
	}{
		{name: "not found", err: leak(store.ErrNotFound), code: codes.NotFound, msg: "no policy has this name; list the policies to see which exist"},
		{name: "origin not found", method: corsdv1.PolicyService_RemoveOrigin_FullMethodName, err: leak(store.ErrNotFound), code: codes.NotFound, msg: "the policy does not exist, or it does not trust this origin; list the policy's origins to see their patterns"},
		{name: "exists", err: leak(store.ErrExists), code: codes.AlreadyExists, msg: "a policy with this name already exists; update it instead, or choose another id"},
		{name: "conflict", err: leak(store.ErrConflict), code: codes.Aborted, msg: "the policy changed since it was read (stale etag); read it again and retry with its current etag"},
		{name: "compacted", err: leak(store.ErrCompacted), code: codes.OutOfRange, msg: "the changes after that revision are no longer retained; start again from revision 0"},
		{name: "store invalid argument", err: leak(store.ErrInvalidArgument), code: codes.InvalidArgument, msg: "the request holds a value corsd cannot use, such as a page_token it did not issue; pass next_page_token unchanged"},
		{name: "too slow", err: leak(store.ErrWatchTooSlow), code: codes.Unavailable, msg: "the watch fell too far behind; resume from the last revision received"},
		{name: "closed", err: leak(store.ErrClosed), code: codes.Unavailable, msg: "corsd is shutting down; retry shortly or call another replica"},
		{name: "not ready", err: leak(errNotReady), code: codes.Unavailable, msg: "corsd has not loaded its policies yet; retry shortly"},
		{name: "canceled", err: leak(context.Canceled), code: codes.Canceled, msg: "the call was canceled"},
		{name: "deadline", err: leak(context.DeadlineExceeded), code: codes.DeadlineExceeded, msg: "the call's deadline passed before corsd answered; retry with a longer deadline"},
		{name: "unknown", err: leak(errors.New("disk on fire")), code: codes.Internal, msg: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.method != "" {
				ctx = grpc.NewContextWithServerTransportStream(ctx, fakeStream{method: tt.method})
			}
			st, _ := status.FromError(toStatus(ctx, tt.err))
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("toStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
			for _, internal := range []string{"boltstore", "store:", "server:", "/var/lib", "nosuch"} {
				if strings.Contains(st.Message(), internal) {
					t.Errorf("toStatus(%v) message %q leaks %q", tt.err, st.Message(), internal)
				}
			}
		})
	}
}
