package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Past maxReportKeys distinct reports, new ones lose their origin and
// detail; past maxCoarseKeys, decisions are lost. What one call may carry
// is policypb's Max* limits.
const (
	maxReportKeys      = policypb.MaxReports
	maxCoarseKeys      = 2 * policypb.MaxReports
	finalReportTimeout = 5 * time.Second
)

// Reporter sends a service's local decisions to corsd (ReportDecisions) so
// that corsd's metrics (`corsd_reported_decisions_total`) and decision log
// show them beside its own: that is where an operator judges a report-only
// policy before enforcing it. Decisions are counted in memory and sent
// every interval, so the cost per request is one map update; what a failed
// send could not deliver is kept for the next one, within a bound.
//
// Give it to Middleware with WithReporter and call Run. By default only
// decisions that were not applied (report-only) are sent; see
// WithReportEnforced. Decisions without a policy and non-CORS requests
// (other than those cross-origin protection refused) are never sent.
//
// A Reporter is safe for concurrent use; build it with NewReporter (the
// zero value is not usable). What it sends includes request Origin values,
// which clients choose freely: they are bounded in length and number, and
// corsd logs them as data.

type Reporter struct {
	c       *Client
	name    string
	cfg     reportConfig
	running atomic.Bool
	lost    atomic.Int64

	// One lock: a request holds it for one map update (about 60 ns), so it
	// stays uncontended far beyond any one service's request rate. Random
	// striping measured slower on two cores (BenchmarkReporter).
	mu     sync.Mutex
	counts reportCounts
}

// reportCounts is a bounded set of counts.
type reportCounts map[reportKey]int64

// add adds n to k's count. Past maxReportKeys a new key loses its origin
// and detail (the parts a client chooses freely) and joins that coarser
// count, which may be new itself up to maxCoarseKeys; past that, add
// reports false.
func (c reportCounts) add(k reportKey, n int64) bool {
	if _, ok := c[k]; !ok && len(c) >= maxReportKeys {
		k.origin, k.detail = "", ""
		if _, ok := c[k]; !ok && len(c) >= maxCoarseKeys {
			return false
		}
	}
	c[k] += n
	return true
}

// reportKey is what makes two decisions the same report.
type reportKey struct {
	policy     string
	revision   int64
	kind       policy.Kind
	reason     policy.Reason
	allowed    bool
	reportOnly bool
	origin     string
	detail     string
}

// ReportOption configures a Reporter.
type ReportOption func(*reportConfig)

type reportConfig struct {
	interval time.Duration
	enforced bool
	logger   *slog.Logger
}

// WithReportInterval sets how often counts are sent (default 10s).
func WithReportInterval(d time.Duration) ReportOption {
	return func(c *reportConfig) {
		if d > 0 {
			c.interval = d
		}
	}
}

// WithReportEnforced also sends the decisions that were applied.
func WithReportEnforced() ReportOption {
	return func(c *reportConfig) { c.enforced = true }
}

// WithReportLogger sets the logger for failed sends (default slog.Default).
func WithReportLogger(l *slog.Logger) ReportOption {
	return func(c *reportConfig) { c.logger = l }
}

// NewReporter returns a Reporter that sends to corsd through c, naming
// itself reporter in corsd's decision log: a service or instance name of at
// most 128 bytes of printable ASCII, as corsd accepts.
func NewReporter(c *Client, reporter string, opts ...ReportOption) (*Reporter, error) {
	if c == nil {
		return nil, errors.New("client: NewReporter: nil Client")
	}
	if !policypb.ValidReporter(reporter) {
		return nil, fmt.Errorf("client: reporter name %q is not at most %d bytes of printable ASCII; use a service or instance name", reporter, policypb.MaxReporterLength)
	}
	cfg := reportConfig{interval: 10 * time.Second, logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	return &Reporter{c: c, name: reporter, cfg: cfg, counts: reportCounts{}}, nil
}

// Lost returns how many decisions never reached corsd: too many distinct
// ones waited to be sent (origin and detail are dropped first, so this
// takes thousands of policies, revisions or reasons), or corsd refused a
// send as invalid.
func (r *Reporter) Lost() int64 { return r.lost.Load() }

// record counts d; reportOnly says the middleware did not apply it.
func (r *Reporter) record(d *policy.Decision, reportOnly bool) {
	if (!reportOnly && !r.cfg.enforced) || !d.Reportable() {
		return
	}
	k := reportKey{
		policy: d.Policy, revision: d.Revision, kind: d.Kind, reason: d.Reason,
		allowed: d.Allowed, reportOnly: reportOnly, origin: d.Origin, detail: d.Detail,
	}
	if len(k.origin) > policy.MaxPatternLength {
		k.origin = ""
	}
	if len(k.detail) > policypb.MaxReportDetailLength {
		k.detail = ""
	}
	r.mu.Lock()
	ok := r.counts.add(k, 1)
	r.mu.Unlock()
	if !ok {
		r.lost.Add(1)
	}
}

// Run sends the counts every interval until ctx ends, then sends what is
// left (bounded by a few seconds) and returns nil. It returns an error at
// once if another Run of r is in progress.
func (r *Reporter) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("client: Reporter.Run is already running")
	}
	defer r.running.Store(false)
	t := time.NewTicker(r.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.cfg.logger.WarnContext(ctx, "client: reporting decisions to corsd failed; will retry", "err", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalReportTimeout)
			err := r.Flush(fctx)
			cancel()
			if err != nil {
				r.cfg.logger.WarnContext(ctx, "client: final report of decisions to corsd failed", "err", err, "lost", r.Lost())
			}
			return nil
		}
	}
}

// Flush sends the counts now. On failure they are kept for the next send,
// unless corsd refused them as invalid (then they count as lost).
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	pending := r.counts
	if len(pending) == 0 {
		r.mu.Unlock()
		return nil
	}
	r.counts = make(reportCounts, len(pending))
	r.mu.Unlock()

	keys := make([]reportKey, 0, len(pending))
	reports := make([]*corsdv1.DecisionReport, 0, len(pending))
	for k, n := range pending {
		// corsd takes at most MaxReportCount per report: a larger count
		// (kept across a long outage) goes in several.
		for n > 0 {
			part := min(n, policypb.MaxReportCount)
			n -= part
			keys = append(keys, k)
			reports = append(reports, &corsdv1.DecisionReport{
				Policy: k.policy, PolicyRevision: k.revision,
				Kind: policypb.KindProto(k.kind), Allowed: k.allowed, Reason: policypb.ReasonProto(k.reason),
				Origin: k.origin, Detail: k.detail, ReportOnly: k.reportOnly, Count: part,
			})
		}
	}
	for sent := 0; sent < len(reports); {
		chunk := reports[sent:min(len(reports), sent+policypb.MaxReports)]
		if _, err := r.c.decisions.ReportDecisions(ctx, &corsdv1.ReportDecisionsRequest{Reporter: r.name, Reports: chunk}); err != nil {
			invalid := status.Code(err) == codes.InvalidArgument
			r.mu.Lock()
			for i, k := range keys[sent:] {
				n := reports[sent+i].GetCount()
				// Reports refused as invalid would be refused again.
				if invalid || !r.counts.add(k, n) {
					r.lost.Add(n)
				}
			}
			r.mu.Unlock()
			return err
		}
		sent += len(chunk)
	}
	return nil
}
