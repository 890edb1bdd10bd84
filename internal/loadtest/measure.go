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

// pooled sums the rounds of one server and kind.
type pooled struct {
	cpuCalls  int
	serverCPU time.Duration
	genCPU    time.Duration
	late      int
	lats      []time.Duration
}

func (p *pooled) serverPerCall() float64 { return us(p.serverCPU) / float64(p.cpuCalls) }
func (p *pooled) genPerCall() float64    { return us(p.genCPU) / float64(p.cpuCalls) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// measure runs every round and prints the tables.
func (h *harness) measure(ctx context.Context) error {
	targets := append(slices.Clone(h.corsds), h.floors...)
	res := map[*target]map[string]*pooled{}
	for _, t := range targets {
		res[t] = map[string]*pooled{}
		for _, k := range kinds {
			res[t][k.name] = &pooled{}
		}
	}
	load0 := loadAvg()
	start := time.Now()
	for round := range h.o.rounds {
		logf("round %d of %d", round+1, h.o.rounds)
		for _, k := range kinds {
			// Rotate the order each round: no server always goes first.
			for i := range targets {
				t := targets[(i+round)%len(targets)]
				p := res[t][k.name]
				c, err := h.gen(ctx, t, k.name, h.o.cpuRate, h.o.cpuDur)
				if err != nil {
					return err
				}
				p.cpuCalls += c.Calls
				p.serverCPU += c.ServerCPU
				p.genCPU += c.GenCPU
				p.late += c.Late
				l, err := h.gen(ctx, t, k.name, h.o.latRate, h.o.latDur)
				if err != nil {
					return err
				}
				p.lats = append(p.lats, l.Latencies...)
				p.late += l.Late
			}
		}
	}
	var lat []time.Duration
	if h.o.samples > 0 {
		var err error
		if lat, err = propagation(ctx, h.conn, h.o.samples); err != nil {
			return err
		}
	}
	env := fmt.Sprintf("%s %s/%s, %d CPUs; load average %s before, %s after; %s; %d round(s) of %v at %d/s (CPU) and %v at %d/s (latency) per server and kind, %v in all",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), load0, loadAvg(), pinText(h.o.pin), h.o.rounds,
		h.o.cpuDur, h.o.cpuRate, h.o.latDur, h.o.latRate, time.Since(start).Round(time.Second))
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
	pf("\n| kind | server | answer bytes | server CPU µs/Check at %d/s | × smallest | generator CPU µs/call | p50 at %d/s | p99 at %d/s | p99 × smallest |\n",
		h.o.cpuRate, h.o.latRate, h.o.latRate)
	pf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range kinds {
		f := res[smallest][k.name]
		for _, t := range targets {
			p := res[t][k.name]
			pf("| %s | %s | %d | %.1f | %.2f | %.1f | %s | %s | %.2f |\n", k.name, t.label, len(t.answer[k.name]),
				p.serverPerCall(), p.serverPerCall()/f.serverPerCall(), p.genPerCall(),
				ms(percentile(p.lats, 50)), ms(percentile(p.lats, 99)),
				float64(percentile(p.lats, 99))/float64(percentile(f.lats, 99)))
		}
	}
	pf("\nTargets (each corsd against the smallest-answer floor of this run):\n\n")
	pf("| server | target | %s |\n", strings.Join(kindNames(), " | "))
	pf("|---|---|%s\n", strings.Repeat("---|", len(kinds)))
	for _, t := range h.corsds {
		var cpu, size, p99 []string
		for _, k := range kinds {
			p, f := res[t][k.name], res[smallest][k.name]
			r := p.serverPerCall() / f.serverPerCall()
			cpu = append(cpu, fmt.Sprintf("%.2fx %s", r, yesNo(r <= cpuTarget)))
			n := len(t.answer[k.name])
			size = append(size, fmt.Sprintf("%d / %d B %s", n, opaBytes[k.name], yesNo(n <= opaBytes[k.name])))
			r = float64(percentile(p.lats, 99)) / float64(percentile(f.lats, 99))
			p99 = append(p99, fmt.Sprintf("%.2fx %s", r, yesNo(r <= p99Target)))
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
			if n := res[t][k.name].late; n > 0 {
				late = append(late, fmt.Sprintf("%s/%s %d", t.label, k.name, n))
			}
		}
	}
	pf("\n%s.\n", env)
	if len(late) > 0 {
		pf("Calls the generator started over 1 ms late (a busy machine): %s.\n", strings.Join(late, ", "))
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
