package policy

import "strconv"

var reasonNames = [...]string{
	ReasonUnspecified:              "UNSPECIFIED",
	ReasonAllowed:                  "ALLOWED",
	ReasonNoOrigin:                 "NO_ORIGIN",
	ReasonOriginNotAllowed:         "ORIGIN_NOT_ALLOWED",
	ReasonOriginMalformed:          "ORIGIN_MALFORMED",
	ReasonMethodNotAllowed:         "METHOD_NOT_ALLOWED",
	ReasonHeaderNotAllowed:         "HEADER_NOT_ALLOWED",
	ReasonHeadersMalformed:         "HEADERS_MALFORMED",
	ReasonPrivateNetworkNotAllowed: "PRIVATE_NETWORK_NOT_ALLOWED",
	ReasonCrossOriginRefused:       "CROSS_ORIGIN_REFUSED",
	ReasonPolicyDisabled:           "POLICY_DISABLED",
	ReasonNoPolicy:                 "NO_POLICY",
	ReasonMethodMalformed:          "METHOD_MALFORMED",
}

// String returns the proto enum name without its REASON_ prefix
// ("ORIGIN_NOT_ALLOWED"), or "Reason(n)" for unknown values.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

var kindNames = [...]string{
	KindUnspecified: "UNSPECIFIED",
	KindPreflight:   "PREFLIGHT",
	KindActual:      "ACTUAL",
	KindNotCORS:     "NOT_CORS",
}

// String returns the proto enum name without its DECISION_KIND_ prefix
// ("PREFLIGHT"), or "Kind(n)" for unknown values.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

var modeNames = [...]string{
	ModeEnforce:    "ENFORCE",
	ModeReportOnly: "REPORT_ONLY",
	ModeDisabled:   "DISABLED",
}

// String returns the proto enum name without its MODE_ prefix
// ("REPORT_ONLY"), or "Mode(n)" for unknown values.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}
