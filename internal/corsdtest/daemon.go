package corsdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the harness. Generous: the machines that run the tests are
// small and shared, and every wait returns as soon as it can.
const (
	// BuildTimeout bounds MustBuild.
	BuildTimeout = 5 * time.Minute
	// ReadyTimeout bounds Start's wait for the "ready" log line.
	ReadyTimeout = 60 * time.Second
	// StopTimeout is how long MustStart's cleanup (and callers that want a
	// default) give corsd after SIGTERM before SIGKILL. corsd's own
	// --shutdown-timeout defaults to 10 s.
	StopTimeout = 20 * time.Second
	// waitDelay bounds the wait for the output pipe once corsd has exited
	// (a child it left behind could hold it open).
	waitDelay = 5 * time.Second
)

// ErrExited is returned by Daemon.Stop when the process had exited on its
// own before Stop or Kill asked it to.
var ErrExited = errors.New("corsdtest: process exited on its own")

// Daemon is a running corsd process started by Start, or an etcd member's
// process (EtcdMember). Its methods are safe for concurrent use.
type Daemon struct {
	// GRPCAddr is the address of the gRPC listener (host:port).
	GRPCAddr string
	// HTTPAddr is the address of the HTTP listener (/metrics, /healthz,
	// /readyz), or "" when the arguments disabled it (--http-listen "").
	HTTPAddr string

	name   string // corsd or etcd, for messages
	cmd    *exec.Cmd
	logs   *Logs
	exited chan struct{}
	err    error // of cmd.Wait, once exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start runs the corsd binary bin with --listen 127.0.0.1:0 --http-listen
// 127.0.0.1:0 --log-format json followed by args (a flag repeated in args
// wins), in the environment of Env(), and waits until it logs "ready". The
// wait ends early when ctx is done and lasts at most ReadyTimeout; ctx does
// not bound the process after Start returns.
//
// On error the process has been killed and the error carries its output.
// On success the caller must end the process with Stop or Kill. On Linux
// the kernel also kills corsd when the thread that started it exits, so a
// crashed caller leaves no daemon behind.
func Start(ctx context.Context, bin string, args ...string) (*Daemon, error) {
	full := append([]string{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	d, err := startProcess(ctx, "corsd", bin, full)
	if err != nil {
		return nil, err
	}
	d.GRPCAddr, _ = d.logs.Find("grpc listening")["addr"].(string)
	if d.GRPCAddr == "" {
		d.Kill()
		return nil, fmt.Errorf("corsdtest: no addr in corsd's \"grpc listening\" line\nlogs:\n%s", d.logs)
	}
	// corsd logs "ready" after both listeners, so a missing line means no
	// HTTP listener.
	d.HTTPAddr, _ = d.logs.Find("http listening")["addr"].(string)
	return d, nil
}

// startProcess runs bin with args in the environment of Env() and waits
// until it logs a JSON line whose msg is "ready"; name (corsd, etcd) is for
// messages.
func startProcess(ctx context.Context, name, bin string, args []string) (*Daemon, error) {
	cmd := exec.Command(bin, args...) //nolint:gosec // G204: running the binary it is given is the harness's job
	cmd.Env = Env()
	cmd.SysProcAttr = sysProcAttr()
	d := &Daemon{name: name, cmd: cmd, logs: &Logs{}, exited: make(chan struct{})}
	cmd.Stderr = d.logs // the processes log to stderr; stdout goes to /dev/null
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("corsdtest: start %s: %w", bin, err)
	}
	go func() {
		d.err = cmd.Wait()
		_ = d.logs.Close()
		close(d.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	if _, err := d.logs.Wait(ctx, "ready"); err != nil {
		if errors.Is(err, ErrLogsClosed) {
			<-d.exited
			return nil, fmt.Errorf("corsdtest: %s exited before it was ready: %w\nlogs:\n%s", name, d.exitErr(), d.logs)
		}
		d.Kill()
		return nil, fmt.Errorf("corsdtest: %s not ready: %w\nlogs:\n%s", name, err, d.logs)
	}
	return d, nil
}

// Pid returns the process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Env returns the environment of the current process without its CORSD_*
// variables, followed by extra ("KEY=value"), so that only what a caller
// sets configures corsd and corsctl.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORSD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// PID returns the process id of corsd (for the load test's CPU accounting
// and pinning).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Logs returns corsd's output (its stderr).
func (d *Daemon) Logs() *Logs { return d.logs }

// Exited returns a channel that is closed once the process has exited and
// its output has been read.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Err returns how the process ended (nil for exit status 0) once Exited is
// closed, and nil before.
func (d *Daemon) Err() error {
	select {
	case <-d.exited:
		return d.err
	default:
		return nil
	}
}

// Stop ends corsd gracefully: SIGTERM, then SIGKILL when it has not exited
// within timeout. It returns nil for a clean exit (status 0 after
// SIGTERM), the exit error (an *exec.ExitError) otherwise, an error when
// SIGKILL was needed, and an error wrapping ErrExited when corsd had
// exited before Stop was called. Only the first Stop or Kill acts; later
// calls wait for it and return its result.
func (d *Daemon) Stop(timeout time.Duration) error {
	d.stopOnce.Do(func() { d.stopErr = d.stop(timeout) })
	return d.stopErr
}

// Signal sends sig to corsd (SIGHUP to reload its tokens).
func (d *Daemon) Signal(sig os.Signal) error { return d.cmd.Process.Signal(sig) }

// Kill ends corsd at once with SIGKILL and waits until it has exited,
// unless Stop or Kill was called before.
func (d *Daemon) Kill() {
	d.stopOnce.Do(func() { d.stopErr = d.stop(0) })
	<-d.exited
}

func (d *Daemon) stop(timeout time.Duration) error {
	select {
	case <-d.exited:
		if d.err != nil {
			return fmt.Errorf("%w: %w", ErrExited, d.err)
		}
		return ErrExited
	default:
	}
	if timeout <= 0 {
		_ = d.cmd.Process.Kill() // fails only when it has exited already
		<-d.exited
		return fmt.Errorf("corsdtest: %s killed", d.name)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("corsdtest: SIGTERM %s: %w", d.name, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-d.exited:
		if d.err != nil {
			return fmt.Errorf("corsdtest: %s exited with %w after SIGTERM", d.name, d.err)
		}
		return nil
	case <-timer.C:
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("corsdtest: %s did not exit within %v of SIGTERM; killed it", d.name, timeout)
	}
}

// exitErr describes how the process ended; it must be called after exited
// is closed.
func (d *Daemon) exitErr() error {
	if d.err != nil {
		return d.err
	}
	return errors.New("exit status 0")
}
