package policy

import (
	"errors"
	"strconv"
	"strings"
)

// Limits of a Config. Compile refuses a Config past any of them; Check
// refuses a preflight past the request limits without parsing it further.
const (
	// MaxOrigins is the maximum number of origin rules in a policy.
	MaxOrigins = 20_000
	// MaxPatternLength is the maximum length in bytes of an origin pattern
	// or a host, as written (before IDNA conversion).
	MaxPatternLength = 1024
	// MaxDescriptionLength is the maximum length in bytes of an origin
	// rule's description.
	MaxDescriptionLength = 1024
	// MaxMethods is the maximum number of allowed methods.
	MaxMethods = 64
	// MaxHeaderNames is the maximum number of names in each of the allowed
	// request headers and exposed response headers lists.
	MaxHeaderNames = 256
	// MaxNameLength is the maximum length in bytes of a method or header
	// name, in the Config and in a preflight's Access-Control-Request-Method.
	MaxNameLength = 128
	// MaxHosts is the maximum number of hosts a policy governs.
	MaxHosts = 256
	// MaxMaxAge is the largest accepted max_age. Browsers cap it lower
	// (Firefox at 24 h, Chromium at 2 h).
	MaxMaxAge = 86400 // seconds
	// MaxRequestHeadersBytes is the longest Access-Control-Request-Headers
	// value a preflight may carry; longer ones are refused with
	// ReasonHeadersMalformed.
	MaxRequestHeadersBytes = 4096
	// MaxRequestHeaders is the largest number of names a preflight's
	// Access-Control-Request-Headers may list; more are refused with
	// ReasonHeadersMalformed.
	MaxRequestHeaders = 64
	// MaxFieldLength is the longest request field an enforcement point
	// joins from several field lines; past it, it passes OverlongField.
	MaxFieldLength = 8 << 10
)

// OverlongField is the value an enforcement point passes in a Request field
// that it did not build because several field lines would join into more
// than MaxFieldLength bytes. No field may hold a NUL, so Check decides it as
// malformed: a refused origin, method or header list, a cross-site request.
const OverlongField = "\x00"

// FieldError is one problem Compile found in a Config. Compile returns all
// of them at once, joined with errors.Join; use FieldErrors to get them back.
type FieldError struct {
	// Field is the path of the offending field with the proto's snake_case
	// names: "origins[2].pattern", "allowed_methods[1]", "max_age". It is
	// empty in errors from NormalizeOrigin and NormalizeHost.
	Field string
	// Value is the offending value as written in the Config (for count
	// limits, the count).
	Value string
	// Reason says what is wrong, in lower case ("pattern has a path").
	Reason string
	// Fix tells the operator what to do ("remove the path: write ...").
	Fix string
}

// Error returns "policy: field: reason (got "value"); fix".
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	b.WriteString(" (got ")
	b.WriteString(strconv.Quote(e.Value))
	b.WriteString(")")
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// FieldErrors returns the *FieldError values in err, which may be one
// *FieldError or a tree of joined or wrapped errors, in order. It returns nil
// when err holds none.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok { //nolint:errorlint // walking the tree by hand to collect every leaf
			out = append(out, fe)
			return
		}
		switch u := err.(type) { //nolint:errorlint // same
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	if len(out) == 0 {
		return nil
	}
	return out
}

// errorList accumulates field errors during Compile.
type errorList []error

func (l *errorList) add(field, value string, p *problem) {
	*l = append(*l, &FieldError{Field: field, Value: value, Reason: p.reason, Fix: p.fix})
}

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return errors.Join(l...)
}
