package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// describe turns err into a message that says what went wrong and how to
// fix it. Every line but the first is indented.
func (a *app) describe(err error) string {
	if ue, ok := errors.AsType[*usageError](err); ok {
		return "corsctl: " + ue.Error()
	}
	// Keep the "apply policies/x: " context that commands add, and explain
	// the status underneath.
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		msg := err.Error()
		if !strings.HasPrefix(msg, "corsctl: ") {
			msg = "corsctl: " + msg
		}
		return msg
	}
	st := se.GRPCStatus()
	prefix := strings.TrimSuffix(err.Error(), st.Err().Error())
	// Servers before 2026-12 prefixed messages with the package name.
	msg := strings.TrimPrefix(st.Message(), "server: ")
	addr := a.address()
	var b strings.Builder
	b.WriteString("corsctl: ")
	b.WriteString(prefix)
	switch st.Code() {
	case codes.InvalidArgument:
		var fvs []*errdetails.BadRequest_FieldViolation
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				fvs = append(fvs, br.GetFieldViolations()...)
			}
		}
		if len(fvs) == 0 {
			fmt.Fprintf(&b, "corsd refused the request as invalid: %s", msg)
			break
		}
		fmt.Fprintf(&b, "corsd refused the request as invalid (%d problem", len(fvs))
		if len(fvs) > 1 {
			b.WriteString("s")
		}
		b.WriteString("):")
		for _, fv := range fvs {
			fmt.Fprintf(&b, "\n  %s: %s", fv.GetField(), fv.GetDescription())
		}
		b.WriteString("\nFix these fields and try again.")
	case codes.NotFound:
		fmt.Fprintf(&b, "not found: %s\nList what exists with: corsctl policies list (and corsctl origins list POLICY)", msg)
	case codes.AlreadyExists:
		fmt.Fprintf(&b, "already exists: %s\nTo change it, use: corsctl apply -f FILE", msg)
	case codes.Aborted:
		fmt.Fprintf(&b, "refused, nothing overwritten: %s\nSee the current state with corsctl policies get NAME (or corsctl diff -f FILE), then retry.", msg)
	case codes.Unauthenticated:
		fmt.Fprintf(&b, "corsd did not accept the credentials: %s\nSet CORSD_TOKEN or --token to a valid token.", msg)
	case codes.PermissionDenied:
		fmt.Fprintf(&b, "permission denied: %s\nUse a token with the needed scope: read (to read), write (to change), check (for decisions).", msg)
	case codes.Unavailable:
		if cause, ok := transportCause(msg); ok {
			fmt.Fprintf(&b, "cannot reach corsd at %s (%s).\nIs corsd running at %s? Start it with: make run (or set --addr / CORSD_ADDR).", addr, cause, addr)
			break
		}
		fmt.Fprintf(&b, "corsd at %s is unavailable: %s\nRetry shortly.", addr, msg)
	case codes.DeadlineExceeded:
		fmt.Fprintf(&b, "corsd at %s did not answer within %v.\nIs corsd running at %s? Raise --timeout if it is slow.", addr, a.timeout, addr)
	case codes.OutOfRange:
		fmt.Fprintf(&b, "%s\nThose changes were compacted away; use --since 0 to start at the oldest retained change.", msg)
	default:
		fmt.Fprintf(&b, "%s: %s", strings.ToLower(codeName(st.Code())), msg)
	}
	return b.String()
}

// transportCause returns the last cause of a connection failure reported by
// the gRPC client ("connection refused", "certificate signed by unknown
// authority"), without gRPC's own wording around it.
func transportCause(msg string) (string, bool) {
	if !strings.HasPrefix(msg, "connection error") && !strings.Contains(msg, "transport: ") {
		return "", false
	}
	msg = strings.TrimRight(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg, true
}

func codeName(c codes.Code) string {
	return strings.ReplaceAll(c.String(), "_", " ")
}
