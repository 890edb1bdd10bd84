package client

import (
	"net"
	"strings"
	"testing"
)

// FuzzSplitEndpoints: a Dial target never panics the parser; an accepted
// list is exactly its comma-separated host:port entries, distinct and at
// most MaxEndpoints, and is loopback only when every entry is.
func FuzzSplitEndpoints(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1,127.0.0.1:2", "[::1]:1,localhost:2", "a:1,,b:2", "dns:///x:1,y:2", "unix:a,b", "h:1,h:1", "x", ",", "a:1, b:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		eps, err := splitEndpoints(target)
		loop := IsLoopback(target)
		if err != nil || eps == nil {
			return
		}
		if strings.Join(eps, ",") != target {
			t.Fatalf("splitEndpoints(%q) = %q: not the target's entries", target, eps)
		}
		if len(eps) > MaxEndpoints {
			t.Fatalf("splitEndpoints(%q): %d endpoints", target, len(eps))
		}
		seen := map[string]bool{}
		all := true
		for _, ep := range eps {
			if h, p, err := net.SplitHostPort(ep); err != nil || h == "" || p == "" {
				t.Fatalf("splitEndpoints(%q) accepted %q, not host:port", target, ep)
			}
			if seen[ep] {
				t.Fatalf("splitEndpoints(%q) accepted %q twice", target, ep)
			}
			seen[ep] = true
			all = all && isLoopback(ep)
		}
		if loop != all {
			t.Fatalf("IsLoopback(%q) = %v, want %v", target, loop, all)
		}
	})
}
