package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
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
	// Messages are sentences for the caller: what happened and what to do.
	// The error's own text (backend names, file paths, wrapped causes)
	// stays in the server; a caller never sees it.
	if upe, ok := errors.AsType[*unknownPolicyError](err); ok {
		return status.Errorf(codes.NotFound, "policy %s does not exist; name an existing policy (list the policies to see which exist) or create it", upe.name)
	}
	if oee, ok := errors.AsType[*originExistsError](err); ok {
		return status.Errorf(codes.AlreadyExists, "the policy already trusts this origin as origins[%d] %q; to change that rule (such as its allow_credentials), update the policy's origins with UpdatePolicy, or remove the rule first", oee.index, oee.pattern)
	}
	if hce, ok := errors.AsType[*store.HostConflictError](err); ok {
		// AlreadyExists, as for a taken name: hosts are unique like names
		// (AIP-133), and retrying unchanged fails again.
		return status.Errorf(codes.AlreadyExists, "policy.hosts[%d]: host %q is already governed by %s; remove it from one of the two policies", hce.Index, hce.Host, hce.Owner)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		if m, _ := grpc.Method(ctx); m == corsdv1.PolicyService_RemoveOrigin_FullMethodName {
			return status.Error(codes.NotFound, "the policy does not exist, or it does not trust this origin; list the policy's origins to see their patterns")
		}
		return status.Error(codes.NotFound, "no policy has this name; list the policies to see which exist")
	case errors.Is(err, store.ErrExists):
		return status.Error(codes.AlreadyExists, "a policy with this name already exists; update it instead, or choose another id")
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, "the policy changed since it was read (stale etag); read it again and retry with its current etag")
	case errors.Is(err, store.ErrCompacted):
		return status.Error(codes.OutOfRange, "the changes after that revision are no longer retained; start again from revision 0")
	case isNoSpace(err):
		// Nothing was written; the same call succeeds once space is freed.
		slog.ErrorContext(ctx, "store write failed: no space left", "err", err)
		return status.Error(codes.ResourceExhausted, "no space left on the store's volume; nothing was written: free space (or raise the quota) and retry")
	case errors.Is(err, store.ErrDataLoss):
		slog.ErrorContext(ctx, "damaged record in the store", "err", err)
		what := "a stored record"
		if de, ok := errors.AsType[*store.DamagedError](err); ok {
			what = "the stored " + de.Record
		}
		return status.Error(codes.DataLoss, what+" is damaged (its checksum does not match); delete the policy (no etag needed) and create it again, or restore a backup")
	case errors.Is(err, store.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, "the request holds a value corsd cannot use, such as a page_token it did not issue; pass next_page_token unchanged")
	case errors.Is(err, store.ErrWatchTooSlow):
		return status.Error(codes.Unavailable, "the watch fell too far behind; resume from the last revision received")
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "corsd is shutting down; retry shortly or call another replica")
	case errors.Is(err, store.ErrUnavailable):
		// The policy store cannot be reached; decisions go on from the
		// snapshot, writes can be retried later.
		slog.WarnContext(ctx, "policy store unavailable", "err", err)
		return status.Error(codes.Unavailable, "the policy store cannot be reached; decisions go on from the last snapshot, retry the change later")
	case errors.Is(err, store.ErrNotEmpty):
		return status.Error(codes.FailedPrecondition, "the store already holds policies; restore only into an empty store")
	case errors.Is(err, errNotReady):
		return status.Error(codes.Unavailable, "corsd has not loaded its policies yet; retry shortly")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before corsd answered; retry with a longer deadline")
	}
	slog.ErrorContext(ctx, "unmapped error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// Bounds of the BadRequest detail, which travels in the trailer: a policy
// with 20,000 bad origins would otherwise make a trailer of megabytes.
const (
	maxViolations          = 100
	maxViolationDescLength = 1024
)

// isNoSpace reports a write that failed for want of space. bbolt formats
// some of its errors with %s, which drops the errno; its text remains.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), syscall.ENOSPC.Error()) || strings.Contains(err.Error(), syscall.EDQUOT.Error())
}

func badRequestStatus(e *badRequestError) error {
	st := status.New(codes.InvalidArgument, e.Error())
	shown := e.violations[:min(len(e.violations), maxViolations)]
	br := &errdetails.BadRequest{FieldViolations: make([]*errdetails.BadRequest_FieldViolation, 0, len(shown)+1)}
	for _, v := range shown {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.field, Description: truncate(v.description, maxViolationDescLength)})
	}
	if rest := len(e.violations) - len(shown); rest > 0 {
		next := e.violations[len(shown)]
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       next.field,
			Description: fmt.Sprintf("and %d more violations from this field on, not listed; fix the ones above and retry to see them", rest),
		})
	}
	if withDetails, err := st.WithDetails(br); err == nil {
		st = withDetails
	}
	return st.Err()
}
