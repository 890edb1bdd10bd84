package corsdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// ErrLogsClosed is returned by Logs.Wait when the output ended (the process
// exited) without the awaited line, and by Logs.Write after Close.
var ErrLogsClosed = errors.New("corsdtest: output ended")

// Logs collects a process's output: the raw text, and each line that is a
// JSON object (slog's JSON handler writes one per record) parsed. It is an
// io.Writer that accepts the output in chunks of any size. The zero value
// is ready to use; a Logs is safe for concurrent use and must not be
// copied after first use.
type Logs struct {
	mu      sync.Mutex
	raw     bytes.Buffer
	partial []byte           // the line being written, up to its newline
	lines   []map[string]any // parsed JSON lines, in order
	changed chan struct{}    // closed and replaced when a line is added or on Close
	closed  bool
}

// Write records p. It never fails before Close.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrLogsClosed
	}
	n := len(p)
	l.raw.Write(p)
	added := false
	for len(p) > 0 {
		line, rest, ok := bytes.Cut(p, []byte{'\n'})
		if !ok {
			l.partial = append(l.partial, p...)
			break
		}
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		added = l.parse(line) || added
		p = rest
	}
	if added {
		l.notify()
	}
	return n, nil
}

// Close parses a last line that lacks its newline and ends the output:
// waiters stop waiting, and later writes fail. It always returns nil.
func (l *Logs) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if len(l.partial) > 0 {
		l.parse(l.partial)
		l.partial = nil
	}
	l.closed = true
	l.notify()
	return nil
}

// parse records line when it is a JSON object. l.mu must be held.
func (l *Logs) parse(line []byte) bool {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil || m == nil {
		return false
	}
	l.lines = append(l.lines, m)
	return true
}

// notify wakes the waiters. l.mu must be held.
func (l *Logs) notify() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// String returns all the output so far, JSON or not, including a last
// line still without its newline.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// Lines returns the JSON lines so far, in order. The maps are shared:
// callers must not modify them.
func (l *Logs) Lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}

// Find returns the first JSON line whose msg is msg, or nil.
func (l *Logs) Find(msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.find(msg)
}

func (l *Logs) find(msg string) map[string]any { return l.nth(msg, 1) }

// nth returns the n-th line whose msg is msg, or nil. l.mu must be held.
func (l *Logs) nth(msg string, n int) map[string]any {
	for _, m := range l.lines {
		if m["msg"] == msg {
			if n--; n == 0 {
				return m
			}
		}
	}
	return nil
}

// Match returns the JSON lines whose msg is msg and whose fields have the
// given values, each compared with the field's fmt.Sprint form (a number
// 3 matches "3", a bool true matches "true").
func (l *Logs) Match(msg string, fields map[string]string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
next:
	for _, m := range l.lines {
		if m["msg"] != msg {
			continue
		}
		for k, v := range fields {
			if fmt.Sprint(m[k]) != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// Wait returns the first JSON line whose msg is msg, waiting for it until
// ctx is done or the output ends (ErrLogsClosed).
func (l *Logs) Wait(ctx context.Context, msg string) (map[string]any, error) {
	return l.WaitNth(ctx, msg, 1)
}

// WaitNth returns the n-th JSON line whose msg is msg (n from 1), waiting
// as Wait does: for a line that each of several events logs.
func (l *Logs) WaitNth(ctx context.Context, msg string, n int) (map[string]any, error) {
	for {
		l.mu.Lock()
		m, closed := l.nth(msg, n), l.closed
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		switch {
		case m != nil:
			return m, nil
		case closed:
			return nil, fmt.Errorf("%w without %d %q lines", ErrLogsClosed, n, msg)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("corsdtest: no %d %q lines: %w", n, msg, context.Cause(ctx))
		}
	}
}
