package server

import (
	"fmt"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsd/corsd/policy"
)

// DecisionRecord is the form of the decision record that ext_authz answers
// carry in dynamic_metadata, for Envoy's access logs. Every byte of it is
// encoded by corsd and decoded by Envoy on every request, so the operator
// picks what the logs need. The zero value is DecisionRecordMinimal.
type DecisionRecord uint8

const (
	// DecisionRecordMinimal records the decision's reason as one string
	// under the key "corsd" (the label of corsd_decisions_total: "allowed",
	// "origin_not_allowed", ...); the decision follows from it, "allowed"
	// being the only reason of an allowed decision. About 20 bytes.
	DecisionRecordMinimal DecisionRecord = iota
	// DecisionRecordNone sends no dynamic_metadata.
	DecisionRecordNone
	// DecisionRecordFull records the whole decision under the key
	// "corsd.decision": kind, allowed, reason, policy, revision, mode,
	// report_only (about 170 bytes), and keeps the status message of
	// denied answers.
	DecisionRecordFull
)

var decisionRecordNames = [...]string{
	DecisionRecordMinimal: "minimal",
	DecisionRecordNone:    "none",
	DecisionRecordFull:    "full",
}

// String returns the name ParseDecisionRecord accepts.
func (r DecisionRecord) String() string {
	if int(r) < len(decisionRecordNames) {
		return decisionRecordNames[r]
	}
	return fmt.Sprintf("DecisionRecord(%d)", r)
}

// ParseDecisionRecord parses "none", "minimal" or "full".
func ParseDecisionRecord(s string) (DecisionRecord, error) {
	for i, n := range decisionRecordNames {
		if s == n {
			return DecisionRecord(i), nil
		}
	}
	return 0, fmt.Errorf("server: decision record %q: use none, minimal or full", s)
}

// MarshalText implements encoding.TextMarshaler (flag.TextVar).
func (r DecisionRecord) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with
// ParseDecisionRecord.
func (r *DecisionRecord) UnmarshalText(b []byte) error {
	v, err := ParseDecisionRecord(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// WithDecisionRecord sets the form of the decision record in ext_authz
// answers (DecisionRecordMinimal by default).
func WithDecisionRecord(r DecisionRecord) Option {
	return func(o *options) error {
		if int(r) >= len(decisionRecordNames) {
			return fmt.Errorf("server: unknown decision record %d", r)
		}
		o.decisionRecord = r
		return nil
	}
}

// authzMinimalKey is the dynamic metadata key of the minimal record:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:corsd)%.
const authzMinimalKey = "corsd"

// authzMinimalRecords holds the minimal record of each reason, built once;
// they are shared by every answer and never modified.
var authzMinimalRecords = func() [numReasons]*structpb.Struct {
	var t [numReasons]*structpb.Struct
	for i := range t {
		t[i] = &structpb.Struct{Fields: map[string]*structpb.Value{
			authzMinimalKey: structpb.NewStringValue(label(reasonLabels[:], i)),
		}}
	}
	return t
}()

// authzStatusDeniedBare is the status of denied answers without the full
// record: Envoy reads only the code.
var authzStatusDeniedBare = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}

// recordFor returns the dynamic metadata of d in the server's record form
// (nil for none). It allocates nothing once warm.
func (a *authzServer) recordFor(d *policy.Decision) *structpb.Struct {
	switch a.rec {
	case DecisionRecordNone:
		return nil
	case DecisionRecordFull:
		return a.metadataFor(d)
	}
	return authzMinimalRecords[min(int(d.Reason), numReasons-1)]
}
