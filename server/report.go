package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// ReportDecisions records decisions that an SDK made locally.
func (d *decisionService) ReportDecisions(ctx context.Context, req *corsdv1.ReportDecisionsRequest) (*corsdv1.ReportDecisionsResponse, error) {
	resp, err := d.s.recordReports(ctx, req)
	return resp, toStatus(ctx, err)
}

func (s *Server) recordReports(ctx context.Context, req *corsdv1.ReportDecisionsRequest) (*corsdv1.ReportDecisionsResponse, error) {
	if err := checkReports(req); err != nil {
		return nil, err
	}
	snap := s.live.cur.Load()
	if snap == nil {
		return nil, status.Error(codes.Unavailable, errNotReady.Error())
	}
	caller := store.Actor(ctx)
	resp := &corsdv1.ReportDecisionsResponse{}
	for _, r := range req.GetReports() {
		// A policy deleted since the reporter decided: its series are gone
		// and must not come back.
		if snap.byName[r.GetPolicy()] == nil {
			resp.Dropped++
			continue
		}
		// Validated above.
		kind, _ := policypb.Kind(r.GetKind())
		reason, _ := policypb.Reason(r.GetReason())
		d := policy.Decision{
			Kind:     kind,
			Allowed:  r.GetAllowed(),
			Reason:   reason,
			Origin:   r.GetOrigin(),
			Detail:   r.GetDetail(),
			Policy:   r.GetPolicy(),
			Revision: r.GetPolicyRevision(),
		}
		if r.GetReportOnly() {
			d.Mode = policy.ModeReportOnly
		}
		s.metrics.addReported(&d, r.GetReportOnly(), r.GetCount())
		// The same rule as for corsd's own decisions (policy's Notable).
		if s.opts.logDecisions || d.Notable(!r.GetReportOnly()) {
			s.log.LogAttrs(ctx, slog.LevelInfo, "reported decision",
				slog.String("reporter", req.GetReporter()),
				slog.String("caller", caller),
				slog.String("policy", d.Policy),
				slog.Int64("policy_revision", d.Revision),
				slog.Bool("report_only", r.GetReportOnly()),
				slog.String("kind", d.Kind.String()),
				slog.Bool("allowed", d.Allowed),
				slog.String("reason", d.Reason.String()),
				slog.String("message", d.Message()),
				slog.String("origin", d.Origin),
				slog.Int64("count", r.GetCount()),
			)
		}
		resp.Recorded++
	}
	return resp, nil
}

// checkReports validates a whole ReportDecisions request, one violation
// per problem.
func checkReports(req *corsdv1.ReportDecisionsRequest) error {
	e := &badRequestError{}
	add := func(field, format string, args ...any) {
		e.violations = append(e.violations, violation{field: field, description: fmt.Sprintf(format, args...)})
	}
	if !policypb.ValidReporter(req.GetReporter()) {
		add("reporter", "must be at most %d bytes of printable ASCII; use a service or instance name", policypb.MaxReporterLength)
	}
	reports := req.GetReports()
	if len(reports) > policypb.MaxReports {
		add("reports", "has %d entries, more than the limit of %d; send them in several calls", len(reports), policypb.MaxReports)
		return e
	}
	for i, r := range reports {
		field := func(name string) string { return fmt.Sprintf("reports[%d].%s", i, name) }
		var bad *badRequestError
		if err := checkName(field("policy"), r.GetPolicy()); errors.As(err, &bad) {
			e.violations = append(e.violations, bad.violations...)
		}
		if r.GetPolicyRevision() < 0 {
			add(field("policy_revision"), "is %d; revisions are not negative", r.GetPolicyRevision())
		}
		if k, ok := policypb.Kind(r.GetKind()); !ok || k == policy.KindUnspecified {
			add(field("kind"), "is %v; use DECISION_KIND_PREFLIGHT, DECISION_KIND_ACTUAL or DECISION_KIND_NOT_CORS", r.GetKind())
		}
		if rs, ok := policypb.Reason(r.GetReason()); !ok || rs == policy.ReasonUnspecified {
			add(field("reason"), "is %v; use the decision's reason", r.GetReason())
		}
		if len(r.GetOrigin()) > policy.MaxPatternLength {
			add(field("origin"), "is %d bytes long, more than the limit of %d; leave it empty", len(r.GetOrigin()), policy.MaxPatternLength)
		}
		if len(r.GetDetail()) > policypb.MaxReportDetailLength {
			add(field("detail"), "is %d bytes long, more than the limit of %d; leave it empty", len(r.GetDetail()), policypb.MaxReportDetailLength)
		}
		if c := r.GetCount(); c < 1 || c > policypb.MaxReportCount {
			add(field("count"), "is %d; it must be 1 to %d", c, policypb.MaxReportCount)
		}
	}
	if len(e.violations) > 0 {
		return e
	}
	return nil
}
