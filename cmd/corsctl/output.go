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

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tMODE\tORIGINS\tHOSTS\tREVISION\tUPDATED")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", p.GetName(), modeString(p.GetMode()), len(p.GetOrigins()),
			listOrDash(p.GetHosts()), p.GetRevision(), timeString(p.GetUpdateTime()))
	}
	return tw.Flush()
}

// printPolicyDetail writes every field of one policy.
func printPolicyDetail(w io.Writer, p *corsdv1.Policy) error {
	tw := newTable(w)
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
	rows := [][2]string{
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
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "Origins (%d):\n", len(p.GetOrigins()))
	if len(p.GetOrigins()) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := printOriginTable(&b, p.GetOrigins()); err != nil {
		return err
	}
	for line := range strings.Lines(b.String()) {
		fmt.Fprint(w, "  "+line)
	}
	return nil
}

func printOriginTable(w io.Writer, rules []*corsdv1.OriginRule) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "PATTERN\tCREDENTIALS\tDESCRIPTION")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.GetPattern(), creds, orDash(r.GetDescription()))
	}
	return tw.Flush()
}

func printDecision(w io.Writer, d *corsdv1.Decision) error {
	tw := newTable(w)
	verdict := "refused"
	if d.GetAllowed() {
		verdict = "allowed"
	}
	kind := strings.TrimPrefix(d.GetKind().String(), "DECISION_KIND_")
	reply := "- (the request goes on to the protected service, with the headers below)"
	if s := d.GetReplyStatus(); s != 0 {
		reply = fmt.Sprintf("%d (answered without calling the protected service)", s)
	}
	policyName := "- (no policy)"
	if d.GetPolicy() != "" {
		policyName = fmt.Sprintf("%s (revision %d)", d.GetPolicy(), d.GetPolicyRevision())
	}
	fmt.Fprintf(tw, "Decision:\t%s\n", verdict)
	fmt.Fprintf(tw, "Kind:\t%s\n", kind)
	fmt.Fprintf(tw, "Reason:\t%s\n", strings.TrimPrefix(d.GetReason().String(), "REASON_"))
	fmt.Fprintf(tw, "Message:\t%s\n", orDash(d.GetMessage()))
	fmt.Fprintf(tw, "Policy:\t%s\n", policyName)
	fmt.Fprintf(tw, "Mode:\t%s\n", modeString(d.GetMode()))
	fmt.Fprintf(tw, "Reply status:\t%s\n", reply)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "Response headers (%d):\n", len(d.GetResponseHeaders()))
	for _, h := range d.GetResponseHeaders() {
		suffix := ""
		if h.GetAppend() {
			suffix = "   (appended)"
		}
		fmt.Fprintf(w, "  %s: %s%s\n", h.GetName(), h.GetValue(), suffix)
	}
	return nil
}

func printChangeTable(w io.Writer, cs []*corsdv1.Change) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "REVISION\tTIME\tACTOR\tKIND\tPOLICY")
	for _, c := range cs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", c.GetRevision(), timeString(c.GetChangeTime()), orDash(c.GetActor()),
			strings.TrimPrefix(c.GetKind().String(), "CHANGE_KIND_"), c.GetName())
	}
	return tw.Flush()
}
