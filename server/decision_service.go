package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	if err := d.s.checkPolicyExists(req.GetPolicy()); err != nil {
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
		ReplyBody:      d.Body,
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
	release, err := d.s.watches.acquire()
	if err != nil {
		return err
	}
	defer release()
	cur, err := d.s.store.Revision(ctx)
	if err != nil {
		return err
	}
	if start > cur {
		return status.Errorf(codes.OutOfRange, "start_revision %d is past the store's revision %d; resync with start_revision 0", start, cur)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snd := newWatchSender(stream, d.s.opts.watchSendTimeout)
	stalled := false
	defer func() { snd.close(stalled) }()

	f := &follower{d: d, snd: snd, filter: filter, last: start}
	since := start
	if start == 0 && cur > 0 {
		// The initial state is read here in chunks rather than by the
		// store's own snapshot, which decodes every policy at once for
		// each watcher: a client that does not read would pin a copy of
		// the store. Subscribe first, then list: what changed meanwhile
		// arrives as events after cur.
		since, f.last, f.owed = cur, cur, true
	}
	// The store filters the live changes by name before decoding them.
	w, err := d.s.store.Watch(ctx, since, req.GetNames()...)
	if err != nil {
		return watchError(err, start)
	}
	if f.owed {
		if err := f.sendInitial(ctx, cur, req.GetNames()); err != nil {
			stalled = errors.Is(err, errStalled)
			return f.end(err)
		}
	}
	err = f.follow(ctx, w)
	stalled = errors.Is(err, errStalled)
	return f.end(err)
}

// follower streams one watch: the initial state (when it reads it
// itself), then the store's events.
type follower struct {
	d      *decisionService
	snd    *watchSender
	filter map[string]bool
	// last is the revision a client resumes from.
	last int64
	// owed: SYNCED is still to be sent, once last reaches syncAt.
	owed   bool
	syncAt int64
	// newer holds the policies of the initial state read at a revision
	// past the one it started from: older events about them are skipped,
	// so that a client never goes back to an older version.
	newer map[string]int64
}

// sendInitial sends the policies as of at least revision from, as
// SNAPSHOT events: the named ones, or all of them a chunk at a time.
func (f *follower) sendInitial(ctx context.Context, from int64, names []string) error {
	f.syncAt = from
	sendOne := func(p *corsdv1.Policy) error {
		if r := p.GetRevision(); r > from {
			if f.newer == nil {
				f.newer = make(map[string]int64)
			}
			f.newer[p.GetName()] = r
			f.syncAt = max(f.syncAt, r)
		}
		return f.snd.send(ctx, &corsdv1.WatchPoliciesResponse{Type: corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Revision: p.GetRevision(), Name: p.GetName(), Policy: p})
	}
	if len(names) > 0 {
		// Filter before reading: only the named policies are decoded.
		for _, n := range slices.Sorted(maps.Keys(f.filter)) {
			p, err := f.d.s.store.Get(ctx, n)
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue
			case errors.Is(err, store.ErrDataLoss):
				f.d.s.log.ErrorContext(ctx, "watch: a damaged policy is left out of the initial state", "policy", n, "err", err)
				continue
			case err != nil:
				return err
			}
			if err := sendOne(p); err != nil {
				return err
			}
		}
		return f.maybeSynced(ctx)
	}
	token := ""
	for {
		page, err := f.d.s.store.List(ctx, watchChunk, token)
		if err != nil {
			return err
		}
		for i, p := range page.Policies {
			page.Policies[i] = nil // let it go once sent
			if err := sendOne(p); err != nil {
				return err
			}
		}
		if token = page.NextPageToken; token == "" {
			return f.maybeSynced(ctx)
		}
	}
}

// maybeSynced sends SYNCED once the stream has reached every revision the
// initial state showed.
func (f *follower) maybeSynced(ctx context.Context) error {
	if !f.owed || f.last < f.syncAt {
		return nil
	}
	f.owed, f.newer = false, nil
	return f.snd.send(ctx, &corsdv1.WatchPoliciesResponse{Type: corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED, Revision: f.last})
}

// follow sends the store's events until the watch ends.
func (f *follower) follow(ctx context.Context, w store.Watch) error {
	interval := f.d.s.opts.progressInterval
	idle := time.NewTimer(interval)
	defer idle.Stop()
	events := w.Events()
	for {
		select {
		case <-f.d.s.shutdown:
			return status.Errorf(codes.Unavailable, "shutting down; resume from revision %d", f.last)
		case <-idle.C:
			if f.last > 0 && !f.owed {
				if err := f.snd.send(ctx, &corsdv1.WatchPoliciesResponse{Type: corsdv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS, Revision: f.last}); err != nil {
					return err
				}
			}
			idle.Reset(interval)
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return watchError(w.Err(), f.last)
			}
			msg := watchEvent(ev, f.filter)
			if ev.Type != store.EventSnapshot {
				// Snapshot events carry the policy's revision, not the
				// stream position; resume only after the synced event.
				f.last = ev.Revision
			}
			if r, ok := f.newer[ev.Name]; ok && ev.Revision <= r {
				msg = nil // the client has a newer version already
			}
			if msg != nil {
				if err := f.snd.send(ctx, msg); err != nil {
					return err
				}
				idle.Reset(interval)
			}
			if err := f.maybeSynced(ctx); err != nil {
				return err
			}
		}
	}
}

// end maps why a watch ended.
func (f *follower) end(err error) error {
	if errors.Is(err, errStalled) {
		f.d.s.metrics.watchEvicted.Inc()
		return status.Errorf(codes.ResourceExhausted, "the client read nothing for %s and the stream was cut off; resume from revision %d", f.d.s.opts.watchSendTimeout, f.last)
	}
	return err
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
		return status.Errorf(codes.Unavailable, "watch ended; resume from revision %d", last)
	case errors.Is(err, store.ErrCompacted):
		return status.Errorf(codes.OutOfRange, "revision %d was compacted away; resync with start_revision 0", last)
	case errors.Is(err, store.ErrWatchTooSlow):
		return status.Errorf(codes.ResourceExhausted, "the stream fell behind and was cut off; resume from revision %d", last)
	case errors.Is(err, store.ErrClosed):
		return status.Errorf(codes.Unavailable, "shutting down; resume from revision %d", last)
	}
	return err
}
