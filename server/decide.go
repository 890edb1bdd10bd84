package server

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
)

// decider answers decisions from the live snapshot.
type decider interface {
	// Decide selects the policy (name if non-empty; else by r.Host: exact host, then wildcard,
	// then with the port stripped; else the configured default policy; else none) and checks r.
	// It records metrics and the decision log. It fails (codes.Unavailable status error) only
	// when no decision can be made: the snapshot is not loaded yet.
	Decide(ctx context.Context, name string, r policy.Request) (policy.Decision, error)
}

var _ decider = (*Server)(nil)

// durationSampleRate: one decision in durationSampleRate is timed for
// corsd_decision_duration_seconds.
const durationSampleRate = 8

// errNotReady: the initial load of the policies has not finished.
var errNotReady = errors.New("server: policies are not loaded yet; retry shortly")

// Decide implements decider. A name that no policy has yields the "no
// policy" decision, as a host that no policy governs does. It takes no lock
// and, with decision logging off, allocates nothing.
func (s *Server) Decide(ctx context.Context, name string, r policy.Request) (policy.Decision, error) {
	snap := s.live.cur.Load()
	if snap == nil {
		return policy.Decision{}, status.Error(codes.Unavailable, errNotReady.Error())
	}
	// Reading the clock costs as much as the decision itself on some
	// machines: time one decision in durationSampleRate.
	timed := rand.Uint32()%durationSampleRate == 0 //nolint:gosec // G404: sampling, not security
	var start time.Time
	if timed {
		start = time.Now()
	}
	var (
		d  policy.Decision
		dc *decisionCounters
	)
	if e := snap.lookup(name, r.Host); e != nil {
		d = e.pol.Check(r)
		dc = e.counters
	} else {
		var none *policy.Policy
		d = none.Check(r)
		dc = s.metrics.noPolicy
	}
	dc.inc(&d)
	if timed {
		s.metrics.decisionDuration.Observe(time.Since(start).Seconds())
	}
	if s.opts.logDecisions || d.Notable(d.Applies()) {
		s.logDecision(ctx, &d, &r)
	}
	return d, nil
}

func (s *Server) logDecision(ctx context.Context, d *policy.Decision, r *policy.Request) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "decision",
		slog.String("policy", d.Policy),
		slog.Int64("policy_revision", d.Revision),
		slog.String("mode", d.Mode.String()),
		slog.String("kind", d.Kind.String()),
		slog.Bool("allowed", d.Allowed),
		slog.String("reason", d.Reason.String()),
		slog.String("message", d.Message()),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("origin", r.Origin),
	)
}
