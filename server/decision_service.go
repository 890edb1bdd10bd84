package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// maxWatchNames bounds the names of one WatchPolicies call.
const maxWatchNames = 1000

// decisionService implements corsd.v1.DecisionService.
type decisionService struct {
	corsdv1.UnimplementedDecisionServiceServer
	s *Server
}

// CheckOrigin decides one request.
func (d *decisionService) CheckOrigin(ctx context.Context, req *corsdv1.CheckOriginRequest) (*corsdv1.CheckOriginResponse, error) {
	resp, err := d.checkOrigin(ctx, req)
	return resp, toStatus(ctx, err)
}

func (d *decisionService) checkOrigin(ctx context.Context, req *corsdv1.CheckOriginRequest) (*corsdv1.CheckOriginResponse, error) {
	if req.GetPolicy() != "" {
		if err := checkName("policy", req.GetPolicy()); err != nil {
			return nil, err
		}
	}
	r := policy.Request{
		Method:                             req.GetMethod(),
		Host:                               req.GetHost(),
		Origin:                             req.GetOrigin(),
		AccessControlRequestMethod:         req.GetAccessControlRequestMethod(),
		AccessControlRequestHeaders:        req.GetAccessControlRequestHeaders(),
		AccessControlRequestPrivateNetwork: req.GetAccessControlRequestPrivateNetwork(),
		SecFetchSite:                       req.GetSecFetchSite(),
	}
	if err := checkRequestSizes(&r); err != nil {
		return nil, err
	}
	dec, err := d.s.Decide(ctx, req.GetPolicy(), r)
	if err != nil {
		return nil, err
	}
	return &corsdv1.CheckOriginResponse{Decision: decisionProto(&dec)}, nil
}

// checkRequestSizes bounds every field: the engine caps what it parses, but
// nothing past maxFieldLen is a real browser request.
func checkRequestSizes(r *policy.Request) error {
	fields := [...]struct {
		name, value string
	}{
		{"method", r.Method},
		{"host", r.Host},
		{"origin", r.Origin},
		{"access_control_request_method", r.AccessControlRequestMethod},
		{"access_control_request_headers", r.AccessControlRequestHeaders},
		{"access_control_request_private_network", r.AccessControlRequestPrivateNetwork},
		{"sec_fetch_site", r.SecFetchSite},
	}
	e := &badRequestError{}
	for _, f := range fields {
		if len(f.value) > maxFieldLen {
			e.violations = append(e.violations, violation{field: f.name, description: fmt.Sprintf("is %d bytes long, more than the limit of %d", len(f.value), maxFieldLen)})
		}
	}
	if len(e.violations) > 0 {
		return e
	}
	return nil
}

// decisionProto converts a decision to its API form.
func decisionProto(d *policy.Decision) *corsdv1.Decision {
	hs := d.Headers()
	out := &corsdv1.Decision{
		Kind:           policypb.KindProto(d.Kind),
		Allowed:        d.Allowed,
		ReplyStatus:    httpStatus(d.Status),
		Reason:         policypb.ReasonProto(d.Reason),
		Message:        d.Message(),
		Policy:         d.Policy,
		PolicyRevision: d.Revision,
	}
	if d.Policy != "" {
		// Without a policy there is no mode to report.
		out.Mode = policypb.ModeProto(d.Mode)
	}
	if len(hs) > 0 {
		out.ResponseHeaders = make([]*corsdv1.Header, len(hs))
		for i, h := range hs {
			out.ResponseHeaders[i] = &corsdv1.Header{Name: h.Name, Value: h.Value, Append: h.Append}
		}
	}
	return out
}

// httpStatus converts an HTTP status code, which the engine keeps within
// 0..599, to the API's int32.
func httpStatus(code int) int32 {
	if code < 0 || code > 999 {
		return 0
	}
	return int32(code)
}

// WatchPolicies streams the requested policies, then their changes.
func (d *decisionService) WatchPolicies(req *corsdv1.WatchPoliciesRequest, stream grpc.ServerStreamingServer[corsdv1.WatchPoliciesResponse]) error {
	ctx := stream.Context()
	return toStatus(ctx, d.watchPolicies(ctx, req, stream))
}

func (d *decisionService) watchPolicies(ctx context.Context, req *corsdv1.WatchPoliciesRequest, stream grpc.ServerStreamingServer[corsdv1.WatchPoliciesResponse]) error {
	if len(req.GetNames()) > maxWatchNames {
		return badField("names", "", fmt.Sprintf("has %d names, more than the limit of %d", len(req.GetNames()), maxWatchNames), "watch all policies with an empty list instead")
	}
	var filter map[string]bool
	if len(req.GetNames()) > 0 {
		filter = make(map[string]bool, len(req.GetNames()))
		for i, n := range req.GetNames() {
			if err := checkName(fmt.Sprintf("names[%d]", i), n); err != nil {
				return err
			}
			filter[n] = true
		}
	}
	start := req.GetStartRevision()
	if start < 0 {
		return badField("start_revision", fmt.Sprint(start), "is negative", "use 0 to start from the current state, or a revision from a previous stream")
	}
	if start > 0 {
		cur, err := d.s.store.Revision(ctx)
		if err != nil {
			return err
		}
		if start > cur {
			return status.Errorf(codes.OutOfRange, "server: start_revision %d is past the store's revision %d; resync with start_revision 0", start, cur)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The store reads and decodes only the named policies (all without).
	w, err := d.s.store.Watch(ctx, start, req.GetNames()...)
	if err != nil {
		return watchError(err, start)
	}
	last := start
	interval := d.s.opts.progressInterval
	idle := time.NewTimer(interval)
	defer idle.Stop()
	events := w.Events()
	for {
		select {
		case <-d.s.shutdown:
			return status.Errorf(codes.Unavailable, "server: shutting down; resume from revision %d", last)
		case <-idle.C:
			if last > 0 {
				if err := stream.Send(&corsdv1.WatchPoliciesResponse{Type: corsdv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS, Revision: last}); err != nil {
					return err
				}
			}
			idle.Reset(interval)
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return watchError(w.Err(), last)
			}
			msg := watchEvent(ev, filter)
			if ev.Type != store.EventSnapshot {
				// Snapshot events carry the policy's revision, not the
				// stream position; resume only after the synced event.
				last = ev.Revision
			}
			if msg == nil {
				continue
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			idle.Reset(interval)
		}
	}
}

// watchEvent converts ev, or returns nil when filter leaves it out.
func watchEvent(ev store.Event, filter map[string]bool) *corsdv1.WatchPoliciesResponse {
	if ev.Type != store.EventSynced && filter != nil && !filter[ev.Name] {
		return nil
	}
	msg := &corsdv1.WatchPoliciesResponse{Revision: ev.Revision, Name: ev.Name, Policy: ev.Policy}
	switch ev.Type {
	case store.EventSnapshot:
		msg.Type = corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT
	case store.EventSynced:
		msg.Type = corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED
	case store.EventPut:
		msg.Type = corsdv1.WatchEventType_WATCH_EVENT_TYPE_PUT
	case store.EventDelete:
		msg.Type = corsdv1.WatchEventType_WATCH_EVENT_TYPE_DELETE
		msg.Policy = nil
	default:
		return nil
	}
	return msg
}

// watchError maps why a watch failed, telling the client where to resume.
func watchError(err error, last int64) error {
	switch {
	case err == nil:
		return status.Errorf(codes.Unavailable, "server: watch ended; resume from revision %d", last)
	case errors.Is(err, store.ErrCompacted):
		return status.Errorf(codes.OutOfRange, "server: revision %d was compacted away; resync with start_revision 0", last)
	case errors.Is(err, store.ErrWatchTooSlow):
		return status.Errorf(codes.ResourceExhausted, "server: the stream fell behind and was cut off; resume from revision %d", last)
	case errors.Is(err, store.ErrClosed):
		return status.Errorf(codes.Unavailable, "server: shutting down; resume from revision %d", last)
	}
	return err
}
