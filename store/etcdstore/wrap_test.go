package etcdstore

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/corsd/corsd/store"
)

// TestWrapUnavailable: etcd's errors that mean "try again" (what a killed
// member or an election produces) are store.ErrUnavailable, so callers get
// gRPC Unavailable, never Internal.
func TestWrapUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "leader changed", err: rpctypes.ErrLeaderChanged, want: true},
		{name: "no leader", err: rpctypes.ErrNoLeader, want: true},
		{name: "server stopped", err: rpctypes.ErrStopped, want: true},
		{name: "timeout due to leader fail", err: rpctypes.ErrTimeoutDueToLeaderFail, want: true},
		{name: "too many requests", err: rpctypes.ErrTooManyRequests, want: false},
		{name: "request too large", err: rpctypes.ErrRequestTooLarge, want: false},
		{name: "other", err: errors.New("boom"), want: false},
	}
	var s Store
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.wrap("update", context.Background(), tt.err)
			if errors.Is(got, store.ErrUnavailable) != tt.want {
				t.Errorf("wrap(%v) = %v; ErrUnavailable: %v, want %v", tt.err, got, !tt.want, tt.want)
			}
		})
	}
}
