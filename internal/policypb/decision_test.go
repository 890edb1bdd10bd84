package policypb

import (
	"strings"
	"testing"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// TestDecisionEnumsMatch: every engine kind and reason has the API value
// of the same name, and back, so a value added on one side only fails here.
func TestDecisionEnumsMatch(t *testing.T) {
	engineKinds, engineReasons := 0, 0
	for i := range 256 {
		k := policy.Kind(i)
		if strings.HasPrefix(k.String(), "Kind(") {
			continue
		}
		engineKinds++
		if got, want := KindProto(k).String(), "DECISION_KIND_"+k.String(); got != want {
			t.Errorf("KindProto(%v) = %s, want %s", k, got, want)
		}
	}
	for i := range 256 {
		r := policy.Reason(i)
		if strings.HasPrefix(r.String(), "Reason(") {
			continue
		}
		engineReasons++
		if got, want := ReasonProto(r).String(), "REASON_"+r.String(); got != want {
			t.Errorf("ReasonProto(%v) = %s, want %s", r, got, want)
		}
	}
	for n, name := range corsdv1.DecisionKind_name {
		k, ok := Kind(corsdv1.DecisionKind(n))
		if !ok || "DECISION_KIND_"+k.String() != name {
			t.Errorf("Kind(%s) = %v, %v", name, k, ok)
		}
	}
	for n, name := range corsdv1.Reason_name {
		r, ok := Reason(corsdv1.Reason(n))
		if !ok || "REASON_"+r.String() != name {
			t.Errorf("Reason(%s) = %v, %v", name, r, ok)
		}
	}
	if engineKinds != len(corsdv1.DecisionKind_name) || engineReasons != len(corsdv1.Reason_name) {
		t.Errorf("engine has %d kinds and %d reasons, the API %d and %d", engineKinds, engineReasons, len(corsdv1.DecisionKind_name), len(corsdv1.Reason_name))
	}
	for m := policy.ModeEnforce; m <= policy.ModeDisabled; m++ {
		if got, want := ModeProto(m).String(), "MODE_"+m.String(); got != want {
			t.Errorf("ModeProto(%v) = %s, want %s", m, got, want)
		}
	}
	for _, v := range []int32{-1, 99, 1 << 20} {
		if _, ok := Kind(corsdv1.DecisionKind(v)); ok {
			t.Errorf("Kind(%d) ok for an undefined value", v)
		}
		if _, ok := Reason(corsdv1.Reason(v)); ok {
			t.Errorf("Reason(%d) ok for an undefined value", v)
		}
	}
}
