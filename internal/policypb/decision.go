package policypb

import (
	"math"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// The engine's Kind and Reason use the API's numbers (TestDecisionEnumsMatch
// holds them together), so the conversions are casts; these functions are
// the only places that make them.

// KindProto converts a decision kind to the API's.
func KindProto(k policy.Kind) corsdv1.DecisionKind { return corsdv1.DecisionKind(k) }

// ReasonProto converts a decision reason to the API's.
func ReasonProto(r policy.Reason) corsdv1.Reason { return corsdv1.Reason(r) }

// ModeProto converts an engine mode to the API's.
func ModeProto(m policy.Mode) corsdv1.Mode { return fromMode(m) }

// Kind converts an API decision kind to the engine's; ok is false for a
// value the API does not define.
func Kind(k corsdv1.DecisionKind) (policy.Kind, bool) {
	if _, ok := corsdv1.DecisionKind_name[int32(k)]; !ok || k < 0 || k > math.MaxUint8 {
		return policy.KindUnspecified, false
	}
	return policy.Kind(k), true
}

// Reason converts an API reason to the engine's; ok is false for a value
// the API does not define.
func Reason(r corsdv1.Reason) (policy.Reason, bool) {
	if _, ok := corsdv1.Reason_name[int32(r)]; !ok || r < 0 || r > math.MaxUint8 {
		return policy.ReasonUnspecified, false
	}
	return policy.Reason(r), true
}

// Limits of one ReportDecisions call, as the API documents them: the
// server enforces them and the SDK stays within them. A report's origin is
// at most policy.MaxPatternLength bytes.
const (
	MaxReports            = 1000
	MaxReporterLength     = 128
	MaxReportDetailLength = 256
	MaxReportCount        = 1_000_000_000
)

// ValidReporter reports whether s may name a reporter: at most
// MaxReporterLength bytes of printable ASCII (it lands in logs verbatim).
func ValidReporter(s string) bool {
	if len(s) > MaxReporterLength {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
