package server

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
)

// noPolicyLabel is the policy label of decisions made without a policy.
const noPolicyLabel = "none"

// metrics holds the server's Prometheus collectors, in its own registry.
type metrics struct {
	reg *prometheus.Registry

	decisions        *prometheus.CounterVec
	reported         *prometheus.CounterVec
	decisionDuration prometheus.Histogram
	storeWrite       *prometheus.HistogramVec
	snapshotRevision prometheus.Gauge
	snapshotPolicies prometheus.Gauge
	watchStreams     prometheus.Gauge
	watchRefused     prometheus.Counter
	watchEvicted     prometheus.Counter
	unknownPolicy    prometheus.Counter

	grpcStarted  *prometheus.CounterVec
	grpcHandled  *prometheus.CounterVec
	grpcDuration *prometheus.HistogramVec
	grpcMsgSent  *prometheus.CounterVec
	grpcMsgRecv  *prometheus.CounterVec

	// noPolicy caches the counters of decisions made without a policy.
	noPolicy *decisionCounters
	// unaryMethods and streamMethods cache *rpcMetrics by full method name
	// (bounded: only registered methods reach the interceptors).
	unaryMethods, streamMethods sync.Map
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_decisions_total",
			Help: "CORS decisions made, by policy, request kind, result (allowed or refused) and reason.",
		}, []string{"policy", "kind", "result", "reason"}),
		reported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_reported_decisions_total",
			Help: "CORS decisions that SDKs made locally and reported (ReportDecisions), by policy, request kind, result, reason and whether they were only reported (not applied).",
		}, []string{"policy", "kind", "result", "reason", "report_only"}),
		decisionDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "corsd_decision_duration_seconds",
			Help: "Time to select a policy and decide one request, excluding transport; sampled: one decision in 8 is timed.",
			// 250 ns to ~1 ms.
			Buckets: prometheus.ExponentialBuckets(250e-9, 2, 13),
		}),
		storeWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "corsd_store_write_duration_seconds",
			Help:    "Time of admin writes to the store, including fsync, by operation.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16), // 100 µs to ~3 s
		}, []string{"op"}),
		snapshotRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsd_snapshot_revision",
			Help: "Highest store revision applied to the live decision snapshot.",
		}),
		unknownPolicy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_unknown_policy_total",
			Help: "ext_authz checks that named a policy (context_extensions corsd_policy) that does not exist; their preflights are refused.",
		}),
		snapshotPolicies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsd_snapshot_policies",
			Help: "Number of policies in the live decision snapshot.",
		}),
		watchStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsd_watch_streams",
			Help: "Open WatchPolicies streams.",
		}),
		watchRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_watch_streams_refused_total",
			Help: "WatchPolicies streams refused because --max-watchers were open.",
		}),
		watchEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_watch_streams_evicted_total",
			Help: "WatchPolicies streams cut off because their client stopped reading for --watch-send-timeout.",
		}),
		grpcStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "RPCs started on the server.",
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		grpcHandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by status code.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		grpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time to handle RPCs, until the server sent the status.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 11), // 10 µs to ~10 s
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		grpcMsgSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Stream messages sent by the server.",
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
		grpcMsgRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Stream messages received by the server.",
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
	}
	m.reg.MustRegister(
		m.decisions, m.reported, m.decisionDuration, m.storeWrite, m.snapshotRevision, m.snapshotPolicies,
		m.watchStreams, m.watchRefused, m.watchEvicted, m.unknownPolicy,
		m.grpcStarted, m.grpcHandled, m.grpcDuration, m.grpcMsgSent, m.grpcMsgRecv,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.noPolicy = m.countersFor(noPolicyLabel)
	return m
}

// damageCounter is a store that counts the damaged records it left out
// of watch snapshots (boltstore does).
type damageCounter interface{ DamagedRecords() int64 }

// watchStore exports the store's own counters, when it keeps them.
func (m *metrics) watchStore(st any) {
	if dc, ok := st.(damageCounter); ok {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "corsd_store_damaged_records_total",
			Help: "Damaged records (checksum mismatch) that the store left out of a watch's initial state; their policies do not serve.",
		}, func() float64 { return float64(dc.DamagedRecords()) }))
	}
}

// Label values, indexed by policy.Kind and policy.Reason. Values past the
// tables (a newer engine) fall back to "other".
var (
	kindLabels   = [...]string{"unspecified", "preflight", "actual", "not_cors"}
	reasonLabels = [...]string{
		"unspecified", "allowed", "no_origin", "origin_not_allowed", "origin_malformed",
		"method_not_allowed", "header_not_allowed", "headers_malformed",
		"private_network_not_allowed", "cross_origin_refused", "policy_disabled",
		"no_policy", "method_malformed",
	}
)

const (
	numKinds   = len(kindLabels) + 1   // + "other"
	numReasons = len(reasonLabels) + 1 // + "other"
)

// decisionCounters caches the resolved counters of one policy label so the
// decision path does no label lookup: WithLabelValues hashes and may
// allocate, Inc on a resolved counter is one atomic add.
type decisionCounters struct {
	vec    *prometheus.CounterVec
	policy string
	c      [numKinds][2][numReasons]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

func (m *metrics) countersFor(policyLabel string) *decisionCounters {
	return &decisionCounters{vec: m.decisions, policy: policyLabel}
}

func (dc *decisionCounters) inc(d *policy.Decision) {
	k := min(int(d.Kind), numKinds-1)
	r := min(int(d.Reason), numReasons-1)
	res := 0
	if d.Allowed {
		res = 1
	}
	slot := &dc.c[k][res][r]
	ref := slot.Load()
	if ref == nil {
		ref = &counterRef{c: dc.vec.WithLabelValues(dc.policy, label(kindLabels[:], k), resultLabel(res), label(reasonLabels[:], r))}
		slot.Store(ref)
	}
	ref.c.Inc()
}

// addReported counts n reported decisions like d. Reports are batched, so
// the label lookup is paid once per report, not per decision.
func (m *metrics) addReported(d *policy.Decision, reportOnly bool, n int64) {
	res := 0
	if d.Allowed {
		res = 1
	}
	m.reported.WithLabelValues(d.Policy, label(kindLabels[:], int(d.Kind)), resultLabel(res),
		label(reasonLabels[:], int(d.Reason)), strconv.FormatBool(reportOnly)).Add(float64(n))
}

func label(tab []string, i int) string {
	if i < len(tab) {
		return tab[i]
	}
	return "other"
}

func resultLabel(res int) string {
	if res == 1 {
		return "allowed"
	}
	return "refused"
}

// forget drops the series of a deleted policy.
func (m *metrics) forget(policyName string) {
	m.decisions.DeletePartialMatch(prometheus.Labels{"policy": policyName})
	m.reported.DeletePartialMatch(prometheus.Labels{"policy": policyName})
}

// rpcMetrics holds the resolved collectors of one method, so that the
// interceptors do no label lookups per call.
type rpcMetrics struct {
	started    prometheus.Counter
	duration   prometheus.Observer
	sent, recv prometheus.Counter
	handled    [numCodes]prometheus.Counter
}

// numCodes is the number of gRPC status codes (OK through Unauthenticated).
const numCodes = 17

func (m *metrics) forMethod(cache *sync.Map, fullMethod, typ string) *rpcMetrics {
	if v, ok := cache.Load(fullMethod); ok {
		return v.(*rpcMetrics)
	}
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	r := &rpcMetrics{
		started:  m.grpcStarted.WithLabelValues(typ, service, method),
		duration: m.grpcDuration.WithLabelValues(typ, service, method),
		sent:     m.grpcMsgSent.WithLabelValues(typ, service, method),
		recv:     m.grpcMsgRecv.WithLabelValues(typ, service, method),
	}
	for c := range numCodes {
		r.handled[c] = m.grpcHandled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	v, _ := cache.LoadOrStore(fullMethod, r)
	return v.(*rpcMetrics)
}

func (r *rpcMetrics) done(start time.Time, err error) {
	c := status.Code(err)
	if int(c) >= numCodes {
		c = codes.Unknown
	}
	r.handled[c].Inc()
	r.duration.Observe(time.Since(start).Seconds())
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r := m.forMethod(&m.unaryMethods, info.FullMethod, "unary")
	r.started.Inc()
	start := time.Now()
	resp, err := handler(ctx, req)
	r.done(start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	typ := "bidi_stream"
	switch {
	case info.IsServerStream && !info.IsClientStream:
		typ = "server_stream"
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	}
	r := m.forMethod(&m.streamMethods, info.FullMethod, typ)
	r.started.Inc()
	start := time.Now()
	err := handler(srv, &countingStream{ServerStream: ss, r: r})
	r.done(start, err)
	return err
}

type countingStream struct {
	grpc.ServerStream
	r *rpcMetrics
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.r.sent.Inc()
	}
	return err
}

func (s *countingStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.r.recv.Inc()
	}
	return err
}
