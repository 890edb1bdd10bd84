package server

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeProbeTimeout bounds one probe of the store's revision.
const storeProbeTimeout = 2 * time.Second

// maxPendingProbes bounds the probes waiting for the snapshot to catch up
// (one per interval while the snapshot lags).
const maxPendingProbes = 64

// staleness tracks how current the decision snapshot is known to be. A
// probe asks the store for its revision every interval; once the snapshot
// holds that revision, the snapshot is known to have been current at the
// probe's time. The snapshot's staleness is the age of the newest such
// time: about the probe interval while all is well, and growing while the
// store cannot be reached (an etcd outage or partition) or the snapshot
// lags behind it. Decisions go on from the snapshot regardless.
type staleness struct {
	s        *Server
	interval time.Duration

	mu        sync.Mutex
	confirmed time.Time // newest probe time at which the snapshot was current
	pending   []probe   // probes whose revision the snapshot does not hold yet
	down      time.Time // first failed probe of the current outage; zero when reachable
	lastErr   error
}

type probe struct {
	at  time.Time
	rev int64
}

func newStaleness(s *Server, interval time.Duration) *staleness {
	return &staleness{s: s, interval: interval, confirmed: time.Now()}
}

// collectors are the metrics of the staleness.
func (st *staleness) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "corsd_snapshot_stale_seconds",
			Help: "Age of the newest moment at which the decision snapshot was known to hold the store's revision; grows while the store is unreachable.",
		}, func() float64 { return st.stale().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "corsd_store_reachable",
			Help: "1 when the last probe of the store's revision succeeded, 0 when it failed (decisions go on from the snapshot; writes fail).",
		}, func() float64 {
			if _, down := st.outage(); down {
				return 0
			}
			return 1
		}),
	}
}

// run probes the store every interval until ctx ends.
func (st *staleness) run(ctx context.Context) {
	t := time.NewTicker(st.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st.probe(ctx)
	}
}

// probe asks the store for its revision once and records the result.
func (st *staleness) probe(ctx context.Context) {
	at := time.Now()
	pctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
	rev, err := st.s.store.Revision(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	snapRev := st.snapshotRev()

	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		if st.down.IsZero() {
			st.down = at
			st.s.log.Warn("store unreachable; deciding from the last snapshot, writes fail", "revision", snapRev, "err", err)
		}
		st.lastErr = err
	} else {
		if !st.down.IsZero() {
			st.s.log.Info("store reachable again", "unreachable_for", time.Since(st.down).Round(time.Millisecond), "revision", rev)
			st.down, st.lastErr = time.Time{}, nil
		}
		if len(st.pending) == maxPendingProbes {
			st.pending = st.pending[1:]
		}
		st.pending = append(st.pending, probe{at: at, rev: rev})
	}
	st.confirmLocked(snapRev)
}

// confirmLocked retires the probes whose revision the snapshot holds.
func (st *staleness) confirmLocked(snapRev int64) {
	n := 0
	for _, p := range st.pending {
		if p.rev > snapRev {
			break
		}
		if p.at.After(st.confirmed) {
			st.confirmed = p.at
		}
		n++
	}
	st.pending = st.pending[n:]
}

// stale returns the snapshot's staleness now.
func (st *staleness) stale() time.Duration {
	snapRev := st.snapshotRev()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.confirmLocked(snapRev) // the snapshot may have caught up since the probe
	return time.Since(st.confirmed)
}

// snapshotRev is the revision the decision snapshot holds (0 before the
// first load).
func (st *staleness) snapshotRev() int64 {
	if snap := st.s.live.cur.Load(); snap != nil {
		return snap.rev
	}
	return 0
}

// outage returns since when the store has been unreachable.
func (st *staleness) outage() (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.down, !st.down.IsZero()
}
