package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Defaults of the watch limits.
const (
	// DefaultMaxWatchers caps concurrent WatchPolicies streams.
	DefaultMaxWatchers = 1000
	// DefaultWatchSendTimeout is how long a WatchPolicies stream may stay
	// unable to send (its client does not read) before it is cut off.
	DefaultWatchSendTimeout = 30 * time.Second
	// watchChunk is how many policies the initial state of a watch reads
	// from the store at a time: what one stream holds, whatever the
	// store's size.
	watchChunk = 8
)

// WithMaxWatchers caps concurrent WatchPolicies streams (default
// DefaultMaxWatchers); past it a watch fails with ResourceExhausted.
func WithMaxWatchers(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("server: max watchers %d must be positive", n)
		}
		o.maxWatchers = n
		return nil
	}
}

// WithWatchSendTimeout sets how long a WatchPolicies stream may stay
// blocked on a client that does not read (gRPC flow control) before it is
// cut off with ResourceExhausted (default DefaultWatchSendTimeout).
func WithWatchSendTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("server: watch send timeout %v must be positive", d)
		}
		o.watchSendTimeout = d
		return nil
	}
}

// watchSlots counts open WatchPolicies streams against the cap.
type watchSlots struct {
	slots chan struct{}
	m     *metrics
}

func newWatchSlots(n int, m *metrics) *watchSlots {
	return &watchSlots{slots: make(chan struct{}, n), m: m}
}

// acquire takes a slot, or fails with ResourceExhausted when none is free.
func (w *watchSlots) acquire() (release func(), err error) {
	select {
	case w.slots <- struct{}{}:
		w.m.watchStreams.Inc()
		return func() {
			<-w.slots
			w.m.watchStreams.Dec()
		}, nil
	default:
		w.m.watchRefused.Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "%d WatchPolicies streams are open, the limit (--max-watchers); retry later with backoff", cap(w.slots))
	}
}

// errStalled ends a watch whose client stopped reading.
var errStalled = errors.New("server: watch stalled")

// watchSender sends a stream's messages from its own goroutine, so that a
// client that stops reading (the send blocks on flow control) is noticed:
// a message not taken within the timeout cuts the stream off. It holds at
// most one message.
type watchSender struct {
	stream  grpc.ServerStreamingServer[corsdv1.WatchPoliciesResponse]
	timeout time.Duration
	msgs    chan *corsdv1.WatchPoliciesResponse
	done    chan error // the goroutine's end: a send error, or nil
	timer   *time.Timer
}

func newWatchSender(stream grpc.ServerStreamingServer[corsdv1.WatchPoliciesResponse], timeout time.Duration) *watchSender {
	s := &watchSender{
		stream:  stream,
		timeout: timeout,
		msgs:    make(chan *corsdv1.WatchPoliciesResponse),
		done:    make(chan error, 1),
		timer:   time.NewTimer(timeout),
	}
	s.timer.Stop()
	go s.run()
	return s
}

func (s *watchSender) run() {
	for msg := range s.msgs {
		if err := s.stream.Send(msg); err != nil {
			s.done <- err
			return
		}
	}
	s.done <- nil
}

// send hands msg over once the previous one went out; errStalled when
// that takes longer than the timeout.
func (s *watchSender) send(ctx context.Context, msg *corsdv1.WatchPoliciesResponse) error {
	s.timer.Reset(s.timeout)
	defer s.timer.Stop()
	select {
	case s.msgs <- msg:
		return nil
	case err := <-s.done:
		s.done <- err // the handler's close reads it again
		return err
	case <-s.timer.C:
		return errStalled
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the goroutine and waits, up to the timeout, for the last
// send. A send still blocked then ends when the handler returns (gRPC
// cancels the stream).
func (s *watchSender) close(stalled bool) {
	close(s.msgs)
	if stalled {
		return
	}
	s.timer.Reset(s.timeout)
	defer s.timer.Stop()
	select {
	case err := <-s.done:
		_ = err // the handler returns its own error, not the last send's
	case <-s.timer.C:
	}
}
