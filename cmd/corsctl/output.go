package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// marshalMessages renders msgs as indented JSON: one object when asList is
// false (msgs must then hold one message), else an array. protojson output
// is re-indented so that it is stable from run to run.
func marshalMessages(asList bool, msgs ...proto.Message) ([]byte, error) {
	var buf bytes.Buffer
	if asList {
		buf.WriteByte('[')
	}
	for i, m := range msgs {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("corsctl: encode output: %w", err)
		}
		buf.Write(b)
	}
	if asList {
		buf.WriteByte(']')
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("corsctl: encode output: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// printMessages writes msgs in the json or yaml output format.
func (a *app) printMessages(asList bool, msgs ...proto.Message) error {
	return writeMessages(a.out, a.output, asList, msgs...)
}

func writeMessages(w io.Writer, format string, asList bool, msgs ...proto.Message) error {
	j, err := marshalMessages(asList, msgs...)
	if err != nil {
		return err
	}
	if format == "yaml" {
		if j, err = yaml.JSONToYAML(j); err != nil {
			return fmt.Errorf("corsctl: encode output: %w", err)
		}
	}
	_, err = w.Write(j)
	return err
}

func policiesAsMessages(ps []*corsdv1.Policy) []proto.Message {
	out := make([]proto.Message, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// align lays out tab-separated rows in columns.
func align(rows []byte) []byte {
	var out bytes.Buffer
	tw := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = tw.Write(rows)
	_ = tw.Flush()
	return out.Bytes()
}

// writeAll writes b to w in one call.
func writeAll(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

func modeString(m corsdv1.Mode) string {
	if m == corsdv1.Mode_MODE_UNSPECIFIED {
		return "ENFORCE"
	}
	return strings.TrimPrefix(m.String(), "MODE_")
}

func timeString(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func listOrDash(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printPolicyTable writes policies one per line.
func printPolicyTable(w io.Writer, ps []*corsdv1.Policy) error {
	var rows bytes.Buffer
	rows.WriteString("NAME\tMODE\tORIGINS\tHOSTS\tREVISION\tUPDATED\n")
	for _, p := range ps {
		fmt.Fprintf(&rows, "%s\t%s\t%d\t%s\t%d\t%s\n", p.GetName(), modeString(p.GetMode()), len(p.GetOrigins()),
			listOrDash(p.GetHosts()), p.GetRevision(), timeString(p.GetUpdateTime()))
	}
	return writeAll(w, align(rows.Bytes()))
}

// printPolicyDetail writes every field of one policy.
func printPolicyDetail(w io.Writer, p *corsdv1.Policy) error {
	maxAge := "- (no Access-Control-Max-Age)"
	if p.GetMaxAge() != nil {
		maxAge = p.GetMaxAge().AsDuration().String()
	}
	statuses := func(v int32, def int) string {
		if v == 0 {
			return strconv.Itoa(def) + " (default)"
		}
		return strconv.Itoa(int(v))
	}
	fields := [][2]string{
		{"Name", p.GetName()},
		{"Description", orDash(p.GetDescription())},
		{"Mode", modeString(p.GetMode())},
		{"Hosts", listOrDash(p.GetHosts())},
		{"Allowed methods", listOrDash(p.GetAllowedMethods())},
		{"Allowed request headers", listOrDash(p.GetAllowedRequestHeaders())},
		{"Exposed response headers", listOrDash(p.GetExposedResponseHeaders())},
		{"Max age", maxAge},
		{"Allow private network", yesNo(p.GetAllowPrivateNetwork())},
		{"Cross-origin protection", yesNo(p.GetCrossOriginProtection())},
		{"Preflight success status", statuses(p.GetPreflightSuccessStatus(), 204)},
		{"Preflight failure status", statuses(p.GetPreflightFailureStatus(), 403)},
		{"Revision", strconv.FormatInt(p.GetRevision(), 10)},
		{"Etag", orDash(p.GetEtag())},
		{"Created", timeString(p.GetCreateTime())},
		{"Updated", timeString(p.GetUpdateTime())},
	}
	var rows bytes.Buffer
	for _, f := range fields {
		fmt.Fprintf(&rows, "%s:\t%s\n", f[0], f[1])
	}
	var b bytes.Buffer
	b.Write(align(rows.Bytes()))
	fmt.Fprintf(&b, "Origins (%d):\n", len(p.GetOrigins()))
	if len(p.GetOrigins()) > 0 {
		for line := range strings.Lines(string(originTable(p.GetOrigins()))) {
			b.WriteString("  " + line)
		}
	}
	return writeAll(w, b.Bytes())
}

func printOriginTable(w io.Writer, rules []*corsdv1.OriginRule) error {
	return writeAll(w, originTable(rules))
}

func originTable(rules []*corsdv1.OriginRule) []byte {
	var rows bytes.Buffer
	rows.WriteString("PATTERN\tCREDENTIALS\tDESCRIPTION\n")
	for _, r := range rules {
		creds := yesNo(r.GetAllowCredentials())
		var dangers []string
		if r.GetDangerouslyAllowCredentialsUnderPublicSuffix() {
			dangers = append(dangers, "under public suffix")
		}
		if r.GetDangerouslyAllowInsecureCredentials() {
			dangers = append(dangers, "insecure")
		}
		if len(dangers) > 0 {
			creds += " (dangerously: " + strings.Join(dangers, ", ") + ")"
		}
		fmt.Fprintf(&rows, "%s\t%s\t%s\n", r.GetPattern(), creds, orDash(r.GetDescription()))
	}
	return align(rows.Bytes())
}

func printDecision(w io.Writer, d *corsdv1.Decision) error {
	verdict := "refused"
	if d.GetAllowed() {
		verdict = "allowed"
	}
	reply := "- (the request goes on to the protected service, with the headers below)"
	if s := d.GetReplyStatus(); s != 0 {
		reply = fmt.Sprintf("%d (answered without calling the protected service)", s)
	}
	policyName, mode := "- (no policy)", "-"
	if d.GetPolicy() != "" {
		policyName = fmt.Sprintf("%s (revision %d)", d.GetPolicy(), d.GetPolicyRevision())
		mode = modeString(d.GetMode())
	}
	var rows bytes.Buffer
	fmt.Fprintf(&rows, "Decision:\t%s\n", verdict)
	fmt.Fprintf(&rows, "Kind:\t%s\n", strings.TrimPrefix(d.GetKind().String(), "DECISION_KIND_"))
	fmt.Fprintf(&rows, "Reason:\t%s\n", strings.TrimPrefix(d.GetReason().String(), "REASON_"))
	fmt.Fprintf(&rows, "Message:\t%s\n", orDash(d.GetMessage()))
	fmt.Fprintf(&rows, "Policy:\t%s\n", policyName)
	fmt.Fprintf(&rows, "Mode:\t%s\n", mode)
	fmt.Fprintf(&rows, "Reply status:\t%s\n", reply)
	var b bytes.Buffer
	b.Write(align(rows.Bytes()))
	fmt.Fprintf(&b, "Response headers (%d):\n", len(d.GetResponseHeaders()))
	for _, h := range d.GetResponseHeaders() {
		suffix := ""
		if h.GetAppend() {
			suffix = "   (appended)"
		}
		fmt.Fprintf(&b, "  %s: %s%s\n", h.GetName(), h.GetValue(), suffix)
	}
	return writeAll(w, b.Bytes())
}

func printChangeTable(w io.Writer, cs []*corsdv1.Change) error {
	var rows bytes.Buffer
	rows.WriteString("REVISION\tTIME\tACTOR\tKIND\tPOLICY\n")
	for _, c := range cs {
		fmt.Fprintf(&rows, "%d\t%s\t%s\t%s\t%s\n", c.GetRevision(), timeString(c.GetChangeTime()), orDash(c.GetActor()),
			strings.TrimPrefix(c.GetKind().String(), "CHANGE_KIND_"), c.GetName())
	}
	return writeAll(w, align(rows.Bytes()))
}

// printValue writes a plain Go value (not a proto message) in the json or
// yaml output format.
func (a *app) printValue(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "->" in diff lines, not "-\u003e"
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("corsctl: encode output: %w", err)
	}
	j := buf.Bytes()
	var err error
	if a.output == "yaml" {
		if j, err = yaml.JSONToYAML(j); err != nil {
			return fmt.Errorf("corsctl: encode output: %w", err)
		}
	}
	return writeAll(a.out, j)
}
