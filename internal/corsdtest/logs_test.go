package corsdtest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const sampleLog = `{"time":"t","level":"INFO","msg":"grpc listening","addr":"127.0.0.1:1","tls":false}
not json: a panic trace or a text handler line
{"msg":"decision","policy":"policies/a","allowed":true,"status":204}
{"msg":"decision","policy":"policies/b","allowed":false,"status":403}
[1,2]
{"msg":"ready"}
`

func TestLogsWrite(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
	}{
		{name: "one write", chunks: []string{sampleLog}},
		{name: "byte by byte", chunks: strings.Split(sampleLog, "")},
		{name: "split inside lines", chunks: []string{sampleLog[:10], sampleLog[10:100], sampleLog[100:101], sampleLog[101:]}},
		{name: "line by line", chunks: strings.SplitAfter(sampleLog, "\n")},
	}
	wantMsgs := []string{"grpc listening", "decision", "decision", "ready"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Logs
			for _, c := range tt.chunks {
				if n, err := l.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", c, n, err, len(c))
				}
			}
			if got := l.String(); got != sampleLog {
				t.Errorf("String() = %q, want the input", got)
			}
			var msgs []string
			for _, m := range l.Lines() {
				msgs = append(msgs, m["msg"].(string))
			}
			if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
				t.Errorf("Lines() msgs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsFindMatch(t *testing.T) {
	var l Logs
	_, _ = l.Write([]byte(sampleLog))
	if got := l.Find("grpc listening")["addr"]; got != "127.0.0.1:1" {
		t.Errorf(`Find("grpc listening")["addr"] = %v, want 127.0.0.1:1`, got)
	}
	if got := l.Find("stopped"); got != nil {
		t.Errorf(`Find("stopped") = %v, want nil`, got)
	}
	tests := []struct {
		name   string
		msg    string
		fields map[string]string
		want   []string // policies of the matching lines
	}{
		{name: "msg only", msg: "decision", want: []string{"policies/a", "policies/b"}},
		{name: "string field", msg: "decision", fields: map[string]string{"policy": "policies/b"}, want: []string{"policies/b"}},
		{name: "bool field as text", msg: "decision", fields: map[string]string{"allowed": "true"}, want: []string{"policies/a"}},
		{name: "number field as text", msg: "decision", fields: map[string]string{"status": "403"}, want: []string{"policies/b"}},
		{name: "missing field matches nothing", msg: "decision", fields: map[string]string{"nope": "x"}},
		{name: "other msg", msg: "ready", fields: map[string]string{"policy": "policies/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range l.Match(tt.msg, tt.fields) {
				got = append(got, m["policy"].(string))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Match(%q, %v) mismatch (-want +got):\n%s", tt.msg, tt.fields, diff)
			}
		})
	}
}

func TestLogsClose(t *testing.T) {
	var l Logs
	_, _ = l.Write([]byte(`{"msg":"first"}` + "\n" + `{"msg":"last"}`))
	if l.Find("last") != nil {
		t.Fatal("a line without its newline was parsed before Close")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Find("last") == nil {
		t.Error("Close did not parse the last line")
	}
	if _, err := l.Write([]byte("late\n")); !errors.Is(err, ErrLogsClosed) {
		t.Errorf("Write after Close: %v, want ErrLogsClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLogsWait(t *testing.T) {
	t.Run("line written later", func(t *testing.T) {
		var l Logs
		go func() {
			time.Sleep(20 * time.Millisecond)
			_, _ = l.Write([]byte(`{"msg":"other"}` + "\n"))
			time.Sleep(20 * time.Millisecond)
			_, _ = l.Write([]byte(`{"msg":"ready","n":1}` + "\n"))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := l.Wait(ctx, "ready")
		if err != nil || m["n"] != float64(1) {
			t.Fatalf(`Wait("ready") = %v, %v; want the ready line`, m, err)
		}
	})
	t.Run("n-th line", func(t *testing.T) {
		var l Logs
		go func() {
			for i := 1; i <= 3; i++ {
				time.Sleep(10 * time.Millisecond)
				_, _ = l.Write([]byte(`{"msg":"reloaded","n":` + strconv.Itoa(i) + `}` + "\n"))
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := l.WaitNth(ctx, "reloaded", 3)
		if err != nil || m["n"] != float64(3) {
			t.Fatalf(`WaitNth("reloaded", 3) = %v, %v; want the third line`, m, err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancelShort()
		if _, err := l.WaitNth(short, "reloaded", 4); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf(`WaitNth("reloaded", 4) error = %v, want DeadlineExceeded`, err)
		}
	})
	t.Run("ctx done", func(t *testing.T) {
		var l Logs
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := l.Wait(ctx, "ready"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf(`Wait("ready") error = %v, want DeadlineExceeded`, err)
		}
	})
	t.Run("output ends", func(t *testing.T) {
		var l Logs
		go func() {
			time.Sleep(20 * time.Millisecond)
			_ = l.Close()
		}()
		if _, err := l.Wait(context.Background(), "ready"); !errors.Is(err, ErrLogsClosed) {
			t.Fatalf(`Wait("ready") error = %v, want ErrLogsClosed`, err)
		}
	})
}

// FuzzLogsWrite checks that how the output is cut into writes changes
// nothing.
func FuzzLogsWrite(f *testing.F) {
	f.Add(sampleLog, 7)
	f.Add("{\"msg\":\"a\"}\n{\"msg\":", 13)
	f.Add("\n\n{}\n", 1)
	f.Fuzz(func(t *testing.T, out string, cut int) {
		if cut < 0 || cut > len(out) {
			return
		}
		var whole, parts Logs
		_, _ = whole.Write([]byte(out))
		_, _ = parts.Write([]byte(out[:cut]))
		_, _ = parts.Write([]byte(out[cut:]))
		_, _ = whole.Close(), parts.Close()
		if whole.String() != out || parts.String() != out {
			t.Fatalf("String() differs from the output")
		}
		if diff := cmp.Diff(whole.Lines(), parts.Lines()); diff != "" {
			t.Fatalf("Lines() depend on the writes (-whole +cut at %d):\n%s", cut, diff)
		}
	})
}
