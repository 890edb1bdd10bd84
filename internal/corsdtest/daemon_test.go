package corsdtest

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		timeout   time.Duration
		wantErr   string // of Stop; "" for a clean exit
		wantExit  int    // exit status in Stop's error, when not 0
		wantExitd bool   // Stop's error wraps ErrExited
	}{
		{name: "clean exit on SIGTERM", script: onTermStop + logListening + logReady + serve, timeout: StopTimeout},
		{name: "exit status after SIGTERM", script: `trap 'exit 3' TERM` + "\n" + logListening + logReady + serve, timeout: StopTimeout, wantErr: "after SIGTERM", wantExit: 3},
		{name: "SIGTERM ignored", script: `trap '' TERM` + "\n" + logListening + logReady + serve, timeout: 200 * time.Millisecond, wantErr: "killed it"},
		{name: "exited on its own", script: logListening + logReady + "exit 4\n", timeout: StopTimeout, wantErr: "exited on its own", wantExit: 4, wantExitd: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Start(context.Background(), fakeCorsd(t, tt.script))
			if err != nil {
				t.Fatal(err)
			}
			if d.GRPCAddr != "127.0.0.1:1" || d.HTTPAddr != "127.0.0.1:2" {
				t.Errorf("addresses = %q, %q; want 127.0.0.1:1, 127.0.0.1:2", d.GRPCAddr, d.HTTPAddr)
			}
			if tt.wantExitd {
				<-d.Exited()
			}
			err = d.Stop(tt.timeout)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Stop: %v\nlogs:\n%s", err, d.Logs())
				}
				if d.Logs().Find("stopped") == nil {
					t.Errorf("no stopped line; logs:\n%s", d.Logs())
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Stop: %v, want an error containing %q", err, tt.wantErr)
			}
			var exit *exec.ExitError
			if tt.wantExit != 0 && (!errors.As(err, &exit) || exit.ExitCode() != tt.wantExit) {
				t.Errorf("Stop: %v, want exit status %d", err, tt.wantExit)
			}
			if got := errors.Is(err, ErrExited); got != tt.wantExitd {
				t.Errorf("errors.Is(%v, ErrExited) = %v, want %v", err, got, tt.wantExitd)
			}
			select {
			case <-d.Exited():
			default:
				t.Fatal("Exited() not closed after Stop returned")
			}
			if again := d.Stop(tt.timeout); again != err { //nolint:errorlint // the very same value, not a wrapped one
				t.Errorf("second Stop = %v, want the first one's %v", again, err)
			}
			d.Kill() // after Stop: does nothing, returns at once
		})
	}
}

func TestStartFails(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		wait    time.Duration
		wantErr []string
	}{
		{name: "exits before ready", script: `echo "corsd: listen: address in use" >&2; exit 1` + "\n", wait: ReadyTimeout, wantErr: []string{"exited before it was ready", "exit status 1", "address in use"}},
		{name: "never ready", script: logListening + serve, wait: 200 * time.Millisecond, wantErr: []string{"not ready", `"ready"`, "grpc listening"}},
		{name: "no grpc address", script: logReady + serve, wait: ReadyTimeout, wantErr: []string{`no addr in corsd's "grpc listening" line`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.wait)
			defer cancel()
			start := time.Now()
			d, err := Start(ctx, fakeCorsd(t, tt.script))
			if err == nil {
				_ = d.Stop(StopTimeout)
				t.Fatal("Start succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Start error lacks %q:\n%v", want, err)
				}
			}
			if el := time.Since(start); el > tt.wait+10*time.Second {
				t.Errorf("Start took %v, want at most about %v", el, tt.wait)
			}
		})
	}
}

func TestStartArgsAndEnv(t *testing.T) {
	t.Setenv("CORSD_TOKENS", "leaked")
	t.Setenv("CORSDTEST_KEPT", "kept")
	script := `printf '{"msg":"args","args":"%s"}\n' "$*" >&2
printf '{"msg":"env","tokens":"%s","kept":"%s"}\n' "${CORSD_TOKENS-unset}" "$CORSDTEST_KEPT" >&2
` + onTermStop + logListening + logReady + serve
	d := MustStart(t, fakeCorsd(t, script), "--db", "x.db", "--http-listen", "")
	if got, want := d.Logs().Find("args")["args"], "--listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --log-format json --db x.db --http-listen "; got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	env := d.Logs().Find("env")
	if env["tokens"] != "unset" || env["kept"] != "kept" {
		t.Errorf("environment: CORSD_TOKENS=%v CORSDTEST_KEPT=%v; want unset and kept", env["tokens"], env["kept"])
	}
	if err := d.Stop(StopTimeout); err != nil {
		t.Fatal(err)
	}
}

func TestKill(t *testing.T) {
	d, err := Start(context.Background(), fakeCorsd(t, onTermStop+logListening+logReady+serve))
	if err != nil {
		t.Fatal(err)
	}
	d.Kill()
	if d.Logs().Find("stopped") != nil {
		t.Error("the fake saw SIGTERM; Kill must send SIGKILL only")
	}
	var exit *exec.ExitError
	if err := d.Err(); !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Errorf("Err() = %v, want death by a signal", err)
	}
	if err := d.Stop(StopTimeout); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop after Kill = %v, want Kill's result", err)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("CORSD_ADDR", "x")
	env := Env("CORSD_ADDR=127.0.0.1:1")
	var addrs []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "CORSD_") {
			addrs = append(addrs, kv)
		}
	}
	if len(addrs) != 1 || addrs[0] != "CORSD_ADDR=127.0.0.1:1" {
		t.Errorf("CORSD_ variables of Env(CORSD_ADDR=127.0.0.1:1) = %v, want only the extra one", addrs)
	}
}
