package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Targets of issue 14, each against the smallest-answer floor of the same
// run, and OPA-Envoy's answer sizes for the same CORS policy.
const (
	cpuTarget = 1.1
	p99Target = 1.1

	propagationLimit = 10 * time.Millisecond
)

// opaBytes is the size of OPA-Envoy's answer to each kind (measured with
// the same policy; a request without Origin gets OPA's refused answer).
var opaBytes = map[string]int{"preflight": 406, "allowed": 181, "refused": 61, "no_origin": 61}

// pooled is what was measured of one server and kind.
type pooled struct {
	cpu, lat *genResult
}

func (p *pooled) serverPerCall() float64 { return us(p.cpu.ServerCPU) / float64(p.cpu.Calls) }
func (p *pooled) genPerCall() float64    { return us(p.cpu.GenCPU) / float64(p.cpu.Calls) }
func (p *pooled) p(q int) time.Duration  { return percentile(p.lat.Latencies, q) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ratios compares p with the floor f: pooled over all slices, and the
// median of the per-cycle ratios (slices measured seconds apart, so slow
// drifts of a shared machine cancel out).
func (p *pooled) cpuRatio(f *pooled) (pool, med float64) {
	var rs []float64
	for i := range min(len(p.cpu.CycleCPU), len(f.cpu.CycleCPU)) {
		rs = append(rs, p.cpu.CycleCPU[i]/f.cpu.CycleCPU[i])
	}
	return p.serverPerCall() / f.serverPerCall(), median(rs)
}

func (p *pooled) p99Ratio(f *pooled) (pool, med float64) {
	var rs []float64
	for i := range min(len(p.lat.CycleP99), len(f.lat.CycleP99)) {
		rs = append(rs, float64(p.lat.CycleP99[i])/float64(f.lat.CycleP99[i]))
	}
	return float64(p.p(99)) / float64(f.p(99)), median(rs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// measure runs every kind against every server and prints the tables.
func (h *harness) measure(ctx context.Context) error {
	targets := append(slices.Clone(h.corsds), h.floors...)
	res := map[*target]map[string]*pooled{}
	for _, t := range targets {
		res[t] = map[string]*pooled{}
	}
	load0 := loadAvg()
	start := time.Now()
	for i, k := range kinds {
		// Rotate who goes first: no server always follows the same one.
		order := append(slices.Clone(targets[i%len(targets):]), targets[:i%len(targets)]...)
		logf("%s: %d/s, then %d/s", k.name, h.o.cpuRate, h.o.latRate)
		cpu, err := h.gen(ctx, order, k.name, h.o.cpuRate)
		if err != nil {
			return err
		}
		lat, err := h.gen(ctx, order, k.name, h.o.latRate)
		if err != nil {
			return err
		}
		for j, t := range order {
			res[t][k.name] = &pooled{cpu: cpu[j], lat: lat[j]}
		}
	}
	var lat []time.Duration
	if h.o.samples > 0 {
		var err error
		if lat, err = propagation(ctx, h.conn, h.o.samples); err != nil {
			return err
		}
	}
	env := fmt.Sprintf("%s %s/%s, %d CPUs; load average %s before, %s after; %s; per server, kind and rate %d slices of %v, the servers taking turns; %v in all",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), load0, loadAvg(), pinText(h.o.pin),
		h.o.cycles, h.o.slice, time.Since(start).Round(time.Second))
	h.report(os.Stdout, targets, res, lat, env)
	return nil
}

func pinText(pin bool) string {
	if pin {
		return "pinned: servers on CPU " + serverCPU + ", generator on CPU " + genCPU
	}
	return "not pinned"
}

func (h *harness) report(w io.Writer, targets []*target, res map[*target]map[string]*pooled, lat []time.Duration, env string) {
	smallest := h.floors[0]
	pf := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
	pf("\n| kind | server | answer bytes | server CPU µs/Check at %d/s | × smallest (pooled / median of cycles) | generator CPU µs/call | p50 at %d/s | p99 at %d/s | p99 × smallest (pooled / median of cycles) |\n",
		h.o.cpuRate, h.o.latRate, h.o.latRate)
	pf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range kinds {
		f := res[smallest][k.name]
		for _, t := range targets {
			p := res[t][k.name]
			cp, cm := p.cpuRatio(f)
			lp, lm := p.p99Ratio(f)
			pf("| %s | %s | %d | %.1f | %.2f / %.2f | %.1f | %s | %s | %.2f / %.2f |\n", k.name, t.label, len(t.answer[k.name]),
				p.serverPerCall(), cp, cm, p.genPerCall(), ms(p.p(50)), ms(p.p(99)), lp, lm)
		}
	}
	pf("\nTargets, each corsd against the smallest-answer floor of this run (ratios: pooled / median of cycles; met when both are):\n\n")
	pf("| server | target | %s |\n", strings.Join(kindNames(), " | "))
	pf("|---|---|%s\n", strings.Repeat("---|", len(kinds)))
	for _, t := range h.corsds {
		var cpu, size, p99 []string
		for _, k := range kinds {
			p, f := res[t][k.name], res[smallest][k.name]
			a, b := p.cpuRatio(f)
			cpu = append(cpu, fmt.Sprintf("%.2f / %.2f %s", a, b, yesNo(a <= cpuTarget && b <= cpuTarget)))
			n := len(t.answer[k.name])
			size = append(size, fmt.Sprintf("%d / %d B %s", n, opaBytes[k.name], yesNo(n <= opaBytes[k.name])))
			a, b = p.p99Ratio(f)
			p99 = append(p99, fmt.Sprintf("%.2f / %.2f %s", a, b, yesNo(a <= p99Target && b <= p99Target)))
		}
		pf("| %s | server CPU ≤ %.1fx | %s |\n", t.label, cpuTarget, strings.Join(cpu, " | "))
		pf("| %s | answer ≤ OPA-Envoy's | %s |\n", t.label, strings.Join(size, " | "))
		pf("| %s | p99 ≤ %.1fx | %s |\n", t.label, p99Target, strings.Join(p99, " | "))
	}
	if len(lat) > 0 {
		p99 := percentile(lat, 99)
		pf("\nAddOrigin → CheckOrigin allowed (%s), n=%d: p50 %s, p99 %s, max %s; p99 < %v: %s\n", h.corsds[0].label, len(lat),
			ms(percentile(lat, 50)), ms(p99), ms(slices.Max(lat)), propagationLimit, yesNo(p99 < propagationLimit))
	}
	var late []string
	for _, t := range targets {
		for _, k := range kinds {
			p := res[t][k.name]
			if n := p.cpu.Late + p.lat.Late; n > 0 {
				late = append(late, fmt.Sprintf("%s/%s %.0f%%", t.label, k.name, 100*float64(n)/float64(p.cpu.Calls+p.lat.Calls)))
			}
		}
	}
	pf("\n%s.\n", env)
	if len(late) > 0 {
		pf("Calls the generator started over 1 ms after their slot (its CPU was busy): %s.\n", strings.Join(late, ", "))
	}
}

func kindNames() []string {
	var s []string
	for _, k := range kinds {
		s = append(s, k.name)
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// percentile returns the nearest-rank p-th percentile of ds (0 when empty).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// dumpAnswers prints every server's answer to each kind.
func (h *harness) dumpAnswers(w io.Writer) error {
	for _, t := range append(slices.Clone(h.corsds), h.floors...) {
		for _, k := range kinds {
			resp := &authv3.CheckResponse{}
			if err := proto.Unmarshal(t.answer[k.name], resp); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(w, "%s, %s: %d bytes\n%s\n", t.label, k.name, len(t.answer[k.name]), protojson.Format(resp))
		}
	}
	return nil
}
