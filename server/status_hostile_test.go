package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// withRawField returns m with a raw string field appended as unknown bytes,
// so that it goes on the wire as it is, unvalidated.
func withRawField[M proto.Message](m M, field protoreflect.Name, raw string) M {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(field)
	b := protowire.AppendTag(nil, fd.Number(), protowire.BytesType)
	b = protowire.AppendString(b, raw)
	m.ProtoReflect().SetUnknown(b)
	return m
}

// TestUndecodableRequests: invalid UTF-8 in a request's string was
// answered Internal, as a server fault; it is the caller's mistake.
func TestUndecodableRequests(t *testing.T) {
	e := newTokenEnv(t)
	e.create("acme", acme())
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{name: "CheckOrigin origin", call: func(ctx context.Context) error {
			_, err := e.dec.CheckOrigin(ctx, withRawField(&corsdv1.CheckOriginRequest{Method: "GET"}, "origin", "https://\xff.example"))
			return err
		}},
		{name: "CreatePolicy id", call: func(ctx context.Context) error {
			_, err := e.policy.CreatePolicy(ctx, withRawField(&corsdv1.CreatePolicyRequest{Policy: &corsdv1.Policy{}}, "policy_id", "a\xc3"))
			return err
		}},
		{name: "GetPolicy malformed wire data", call: func(ctx context.Context) error {
			req := &corsdv1.GetPolicyRequest{}
			req.ProtoReflect().SetUnknown([]byte{0x0a, 0x7f}) // a length past the end
			_, err := e.policy.GetPolicy(ctx, req)
			return err
		}},
		{name: "WatchPolicies names (a stream)", call: func(ctx context.Context) error {
			s, err := e.dec.WatchPolicies(ctx, withRawField(&corsdv1.WatchPoliciesRequest{}, "names", "policies/\xff"))
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(as(checkerToken))
			defer cancel()
			if strings.HasPrefix(tt.name, "Create") || strings.HasPrefix(tt.name, "Get") {
				ctx = e.admin()
			}
			st := wantCode(t, tt.call(ctx), codes.InvalidArgument)
			if !strings.Contains(st.Message(), "does not decode") {
				t.Errorf("message %q does not say the request does not decode", st.Message())
			}
		})
	}
	// The server still decides.
	if _, err := e.dec.CheckOrigin(e.admin(), &corsdv1.CheckOriginRequest{Method: "GET"}); err != nil {
		t.Errorf("CheckOrigin after bad requests: %v", err)
	}
}

// fullStore fails every write as a full volume does, with the error as
// boltstore wraps it, or with bbolt's own text when it drops the error's
// type (bbolt formats a failed file resize with %s).
type fullStore struct {
	store.Store
	textOnly bool
}

func (f fullStore) err() error {
	if f.textOnly {
		return errors.New("boltstore: create: commit: file resize error: truncate /data/corsd.db: " + syscall.ENOSPC.Error())
	}
	return fmt.Errorf("boltstore: create: commit: %w", &os.PathError{Op: "write", Path: "/data/corsd.db", Err: syscall.ENOSPC})
}

func (f fullStore) Create(context.Context, *corsdv1.Policy) (*corsdv1.Policy, error) {
	return nil, f.err()
}

// TestFullDisk: a full volume was answered Internal "internal error". A
// real small volume is not available to tests, so the store is wrapped to
// fail its writes with ENOSPC as boltstore reports it.
func TestFullDisk(t *testing.T) {
	for _, textOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("text only %v", textOnly), func(t *testing.T) {
			e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, wrap: func(s store.Store) store.Store { return fullStore{Store: s, textOnly: textOnly} }})
			_, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: acme()})
			st := wantCode(t, err, codes.ResourceExhausted)
			if !strings.Contains(st.Message(), "no space left on the store's volume") {
				t.Errorf("message %q does not say the volume is full", st.Message())
			}
		})
	}
}

// damagedStore reports a damaged record as boltstore does.
type damagedStore struct{ store.Store }

func (damagedStore) Get(_ context.Context, name string) (*corsdv1.Policy, error) {
	return nil, fmt.Errorf("boltstore: not a valid corsd database: %w", &store.DamagedError{Record: fmt.Sprintf("policy %q", name)})
}

// TestDamagedRecordStatus: a damaged record was answered Internal; it is
// DataLoss, naming the policy and what to do. The store's count of damaged
// records is exported.
func TestDamagedRecordStatus(t *testing.T) {
	e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, wrap: func(s store.Store) store.Store { return damagedStore{s} }})
	_, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
	st := wantCode(t, err, codes.DataLoss)
	if !strings.Contains(st.Message(), `"policies/acme"`) || !strings.Contains(st.Message(), "delete the policy") {
		t.Errorf("message %q does not name the policy and the repair", st.Message())
	}

	plain := newTokenEnv(t)
	rec := httptest.NewRecorder()
	plain.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "corsd_store_damaged_records_total 0") {
		t.Error("/metrics has no corsd_store_damaged_records_total")
	}
}
