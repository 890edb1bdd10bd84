package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
	"github.com/corsd/corsd/store"
)

// violation is one problem with a request field.
type violation struct {
	field, description string
}

// badRequestError is an invalid request: one violation per problem. It
// becomes InvalidArgument with a google.rpc.BadRequest detail.
type badRequestError struct {
	violations []violation
}

func (e *badRequestError) Error() string {
	var b strings.Builder
	b.WriteString("invalid argument: ")
	const maxShown = 10
	for i, v := range e.violations {
		if i == maxShown {
			fmt.Fprintf(&b, "; and %d more (see the BadRequest details)", len(e.violations)-maxShown)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.field)
		b.WriteString(": ")
		b.WriteString(v.description)
	}
	return b.String()
}

// badField returns a badRequestError for one field. The description reads
// "<field> <value> <reason>; <fix>" in the status message.
func badField(field, value, reason, fix string) error {
	desc := reason
	if value != "" {
		desc = fmt.Sprintf("%q %s", truncate(value, 80), reason)
	}
	if fix != "" {
		desc += "; " + fix
	}
	return &badRequestError{violations: []violation{{field: field, description: desc}}}
}

// invalidPolicy converts the policy engine's field errors in err, whose
// fields are relative to a policy, into a badRequestError whose fields are
// relative to the request: prefix (such as "policy.") is prepended. It
// returns err unchanged when it holds no field errors.
func invalidPolicy(prefix string, err error) error {
	return remapFields(err, func(field string) string { return prefix + field })
}

// remapFields is invalidPolicy with an arbitrary field mapping.
func remapFields(err error, mapField func(string) string) error {
	fes := policy.FieldErrors(err)
	if len(fes) == 0 {
		return err
	}
	return fieldViolations(fes, mapField)
}

func fieldViolations(fes []*policy.FieldError, mapField func(string) string) *badRequestError {
	e := &badRequestError{violations: make([]violation, 0, len(fes))}
	for _, fe := range fes {
		e.violations = append(e.violations, violation{field: mapField(fe.Field), description: fieldErrorDescription(fe)})
	}
	return e
}

func fieldErrorDescription(fe *policy.FieldError) string {
	desc := fe.Reason
	if fe.Fix != "" {
		desc += "; " + fe.Fix
	}
	return desc
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// toStatus is the only place where errors become gRPC statuses; every
// handler returns through it. Unknown errors become Internal with a generic
// message, and their detail is logged once.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		// Already a status (built by a handler on purpose).
		return err
	}
	if bre, ok := errors.AsType[*badRequestError](err); ok {
		return badRequestStatus(bre)
	}
	if fes := policy.FieldErrors(err); len(fes) > 0 {
		return badRequestStatus(fieldViolations(fes, func(f string) string { return "policy." + f }))
	}
	if hce, ok := errors.AsType[*store.HostConflictError](err); ok {
		// AlreadyExists, as for a taken name: hosts are unique like names
		// (AIP-133), and retrying unchanged fails again.
		return status.Errorf(codes.AlreadyExists, "policy.hosts[%d]: host %q is already governed by %s; remove it from one of the two policies", hce.Index, hce.Host, hce.Owner)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error()+"; re-read the policy and retry with its current etag")
	case errors.Is(err, store.ErrCompacted):
		return status.Error(codes.OutOfRange, err.Error()+"; start again from revision 0")
	case errors.Is(err, store.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrWatchTooSlow):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "server: shutting down")
	case errors.Is(err, store.ErrUnavailable):
		// The policy store cannot be reached; decisions go on from the
		// snapshot, writes can be retried later.
		slog.WarnContext(ctx, "policy store unavailable", "err", err)
		return status.Error(codes.Unavailable, "server: the policy store is unavailable; retry later")
	case errors.Is(err, store.ErrNotEmpty):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errNotReady):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "server: call canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "server: deadline exceeded")
	}
	slog.ErrorContext(ctx, "unmapped error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

func badRequestStatus(e *badRequestError) error {
	st := status.New(codes.InvalidArgument, e.Error())
	br := &errdetails.BadRequest{FieldViolations: make([]*errdetails.BadRequest_FieldViolation, 0, len(e.violations))}
	for _, v := range e.violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.field, Description: v.description})
	}
	if withDetails, err := st.WithDetails(br); err == nil {
		st = withDetails
	}
	return st.Err()
}
