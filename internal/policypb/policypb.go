// Package policypb converts between the API's corsd.v1.Policy message and
// the engine's policy.Config, and compiles and normalizes policies given as
// messages. The server, the SDK and the CLI share it so that a policy means
// the same everywhere.
package policypb

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// ToConfig returns the engine configuration of p. A nil p gives the zero
// Config. MODE_UNSPECIFIED means enforce; a mode value the API does not
// define maps to one that policy.Compile refuses (field "mode"). An unset
// max_age leaves MaxAgeSet false; a set one is converted even when out of
// range (a value too large to represent saturates), so that Compile can
// refuse it.
func ToConfig(p *corsdv1.Policy) policy.Config {
	if p == nil {
		return policy.Config{}
	}
	c := policy.Config{
		Name:                   p.GetName(),
		Revision:               p.GetRevision(),
		AllowedMethods:         cloneStrings(p.GetAllowedMethods()),
		AllowedRequestHeaders:  cloneStrings(p.GetAllowedRequestHeaders()),
		ExposedResponseHeaders: cloneStrings(p.GetExposedResponseHeaders()),
		AllowPrivateNetwork:    p.GetAllowPrivateNetwork(),
		Hosts:                  cloneStrings(p.GetHosts()),
		Mode:                   toMode(p.GetMode()),
		CrossOriginProtection:  p.GetCrossOriginProtection(),
		PreflightSuccessStatus: int(p.GetPreflightSuccessStatus()),
		PreflightFailureStatus: int(p.GetPreflightFailureStatus()),
	}
	if p.GetOrigins() != nil {
		c.Origins = make([]policy.Origin, 0, len(p.GetOrigins()))
		for _, o := range p.GetOrigins() {
			c.Origins = append(c.Origins, policy.Origin{
				Pattern:          o.GetPattern(),
				AllowCredentials: o.GetAllowCredentials(),
				Description:      o.GetDescription(),
				DangerouslyAllowCredentialsUnderPublicSuffix: o.GetDangerouslyAllowCredentialsUnderPublicSuffix(),
				DangerouslyAllowInsecureCredentials:          o.GetDangerouslyAllowInsecureCredentials(),
				DangerouslyAllowWildcardUnderPublicSuffix:    o.GetDangerouslyAllowWildcardUnderPublicSuffix(),
			})
		}
	}
	if d := p.GetMaxAge(); d != nil {
		c.MaxAge, c.MaxAgeSet = toDuration(d), true
	}
	return c
}

// FromConfig returns the writable fields of c as a message: everything but
// description and the output-only fields other than name and revision
// (which it copies from c's metadata). ModeEnforce becomes MODE_ENFORCE.
func FromConfig(c policy.Config) *corsdv1.Policy {
	p := &corsdv1.Policy{
		Name:                   c.Name,
		Revision:               c.Revision,
		AllowedMethods:         cloneStrings(c.AllowedMethods),
		AllowedRequestHeaders:  cloneStrings(c.AllowedRequestHeaders),
		ExposedResponseHeaders: cloneStrings(c.ExposedResponseHeaders),
		AllowPrivateNetwork:    c.AllowPrivateNetwork,
		Hosts:                  cloneStrings(c.Hosts),
		Mode:                   fromMode(c.Mode),
		CrossOriginProtection:  c.CrossOriginProtection,
		PreflightSuccessStatus: toInt32(c.PreflightSuccessStatus),
		PreflightFailureStatus: toInt32(c.PreflightFailureStatus),
	}
	for _, o := range c.Origins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{
			Pattern:          o.Pattern,
			AllowCredentials: o.AllowCredentials,
			Description:      o.Description,
			DangerouslyAllowCredentialsUnderPublicSuffix: o.DangerouslyAllowCredentialsUnderPublicSuffix,
			DangerouslyAllowInsecureCredentials:          o.DangerouslyAllowInsecureCredentials,
			DangerouslyAllowWildcardUnderPublicSuffix:    o.DangerouslyAllowWildcardUnderPublicSuffix,
		})
	}
	if c.MaxAgeSet {
		p.MaxAge = durationpb.New(c.MaxAge)
	}
	return p
}

// Compile compiles p. On failure the error holds every problem as a
// *policy.FieldError (see policy.FieldErrors), with proto field names.
func Compile(p *corsdv1.Policy) (*policy.Policy, error) {
	c := ToConfig(p)
	if d := p.GetDescription(); len(d) > policy.MaxDescriptionLength {
		// The engine does not see the policy's description; bound it
		// here as it bounds each origin's.
		_, err := compileMaxAge(p, c)
		return nil, errors.Join(&policy.FieldError{
			Field:  "description",
			Value:  strings.ToValidUTF8(d[:64], "") + "...",
			Reason: fmt.Sprintf("description is %d bytes long; the limit is %d", len(d), policy.MaxDescriptionLength),
			Fix:    "shorten the description",
		}, err)
	}
	return compileMaxAge(p, c)
}

// compileMaxAge is Compile past the description check.
func compileMaxAge(p *corsdv1.Policy, c policy.Config) (*policy.Policy, error) {
	if d := p.GetMaxAge(); d != nil && d.CheckValid() != nil {
		// Seconds and nanos of opposite signs, or nanos past a second: the
		// engine would see a plausible duration, so refuse it here (and
		// only here) and let Compile report the other fields.
		c.MaxAge, c.MaxAgeSet = 0, false
		_, err := policy.Compile(c)
		return nil, errors.Join(&policy.FieldError{
			Field:  "max_age",
			Value:  fmt.Sprintf("{seconds: %d, nanos: %d}", d.GetSeconds(), d.GetNanos()),
			Reason: "max_age is not a valid duration",
			Fix:    "give whole seconds, such as 600s, with nanos 0",
		}, err)
	}
	return policy.Compile(c)
}

// Normalize compiles p and returns a copy of it whose writable fields hold
// the normalized configuration (origin patterns, methods and hosts as the
// engine canonicalizes them; MODE_UNSPECIFIED as MODE_ENFORCE), together
// with the compiled policy. The description and the output-only fields are
// copied unchanged. On failure it returns Compile's error, with its field
// errors intact, and p is not modified either way.
func Normalize(p *corsdv1.Policy) (*corsdv1.Policy, *policy.Policy, error) {
	compiled, err := Compile(p)
	if err != nil {
		return nil, nil, err
	}
	n := FromConfig(compiled.Config())
	out := proto.Clone(p).(*corsdv1.Policy)
	out.Origins = n.Origins
	out.AllowedMethods = n.AllowedMethods
	out.AllowedRequestHeaders = n.AllowedRequestHeaders
	out.ExposedResponseHeaders = n.ExposedResponseHeaders
	out.MaxAge = n.MaxAge
	out.AllowPrivateNetwork = n.AllowPrivateNetwork
	out.Hosts = n.Hosts
	out.Mode = n.Mode
	out.CrossOriginProtection = n.CrossOriginProtection
	out.PreflightSuccessStatus = n.PreflightSuccessStatus
	out.PreflightFailureStatus = n.PreflightFailureStatus
	return out, compiled, nil
}

// modeUnknown stands for a proto mode that the API does not define; it is
// past policy.ModeDisabled, so Compile refuses it.
const modeUnknown = policy.Mode(math.MaxUint8)

func toMode(m corsdv1.Mode) policy.Mode {
	switch m {
	case corsdv1.Mode_MODE_UNSPECIFIED, corsdv1.Mode_MODE_ENFORCE:
		return policy.ModeEnforce
	case corsdv1.Mode_MODE_REPORT_ONLY:
		return policy.ModeReportOnly
	case corsdv1.Mode_MODE_DISABLED:
		return policy.ModeDisabled
	}
	if m > corsdv1.Mode_MODE_DISABLED && m < corsdv1.Mode(modeUnknown) {
		return policy.Mode(m) // keeps the number in Compile's message
	}
	return modeUnknown
}

func fromMode(m policy.Mode) corsdv1.Mode {
	switch m {
	case policy.ModeEnforce:
		return corsdv1.Mode_MODE_ENFORCE
	case policy.ModeReportOnly:
		return corsdv1.Mode_MODE_REPORT_ONLY
	case policy.ModeDisabled:
		return corsdv1.Mode_MODE_DISABLED
	}
	return corsdv1.Mode(m)
}

// toDuration converts without durationpb's validity check: Compile reports
// a bad max_age with a field error, which a conversion error could not.
func toDuration(d *durationpb.Duration) time.Duration {
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	s, n := d.GetSeconds(), int64(d.GetNanos())
	switch {
	case s > maxSeconds:
		return time.Duration(math.MaxInt64)
	case s < -maxSeconds:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(s)*time.Second + time.Duration(n)
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append(make([]string, 0, len(s)), s...)
}

// toInt32 saturates: a status past int32 is invalid either way, and stays
// invalid.
func toInt32(v int) int32 {
	switch {
	case v > math.MaxInt32:
		return math.MaxInt32
	case v < math.MinInt32:
		return math.MinInt32
	}
	return int32(v)
}
