package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/corsd/corsd/internal/corsdtest"
	"github.com/corsd/corsd/internal/policypb"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// refusedReport is a report-only refusal of policies/acme.
func refusedReport(count int64) *corsdv1.DecisionReport {
	return &corsdv1.DecisionReport{
		Policy: "policies/acme", PolicyRevision: 1,
		Kind: corsdv1.DecisionKind_DECISION_KIND_ACTUAL, Reason: corsdv1.Reason_REASON_ORIGIN_NOT_ALLOWED,
		Origin: "https://evil.example", ReportOnly: true, Count: count,
	}
}

func TestReportDecisionsValidation(t *testing.T) {
	e := newTokenEnv(t)
	e.create("acme", acme())
	with := func(edit func(r *corsdv1.DecisionReport)) *corsdv1.ReportDecisionsRequest {
		r := refusedReport(1)
		edit(r)
		return &corsdv1.ReportDecisionsRequest{Reporter: "svc", Reports: []*corsdv1.DecisionReport{refusedReport(1), r}}
	}
	tests := []struct {
		name   string
		req    *corsdv1.ReportDecisionsRequest
		fields []string
	}{
		{name: "bad policy name", req: with(func(r *corsdv1.DecisionReport) { r.Policy = "acme" }), fields: []string{"reports[1].policy"}},
		{name: "no policy", req: with(func(r *corsdv1.DecisionReport) { r.Policy = "" }), fields: []string{"reports[1].policy"}},
		{name: "negative revision", req: with(func(r *corsdv1.DecisionReport) { r.PolicyRevision = -1 }), fields: []string{"reports[1].policy_revision"}},
		{name: "no kind", req: with(func(r *corsdv1.DecisionReport) { r.Kind = 0 }), fields: []string{"reports[1].kind"}},
		{name: "unknown kind", req: with(func(r *corsdv1.DecisionReport) { r.Kind = 99 }), fields: []string{"reports[1].kind"}},
		{name: "no reason", req: with(func(r *corsdv1.DecisionReport) { r.Reason = 0 }), fields: []string{"reports[1].reason"}},
		{name: "unknown reason", req: with(func(r *corsdv1.DecisionReport) { r.Reason = 999 }), fields: []string{"reports[1].reason"}},
		{name: "zero count", req: with(func(r *corsdv1.DecisionReport) { r.Count = 0 }), fields: []string{"reports[1].count"}},
		{name: "huge count", req: with(func(r *corsdv1.DecisionReport) { r.Count = policypb.MaxReportCount + 1 }), fields: []string{"reports[1].count"}},
		{name: "long origin", req: with(func(r *corsdv1.DecisionReport) { r.Origin = strings.Repeat("o", 1025) }), fields: []string{"reports[1].origin"}},
		{name: "long detail", req: with(func(r *corsdv1.DecisionReport) { r.Detail = strings.Repeat("d", policypb.MaxReportDetailLength+1) }), fields: []string{"reports[1].detail"}},
		{name: "every problem at once", req: with(func(r *corsdv1.DecisionReport) { r.Policy, r.Kind, r.Count = "x", 0, -5 }), fields: []string{"reports[1].policy", "reports[1].kind", "reports[1].count"}},
		{name: "reporter with a newline", req: &corsdv1.ReportDecisionsRequest{Reporter: "svc\nfake log line"}, fields: []string{"reporter"}},
		{name: "long reporter", req: &corsdv1.ReportDecisionsRequest{Reporter: strings.Repeat("r", policypb.MaxReporterLength+1)}, fields: []string{"reporter"}},
		{name: "too many reports", req: &corsdv1.ReportDecisionsRequest{Reports: make([]*corsdv1.DecisionReport, policypb.MaxReports+1)}, fields: []string{"reports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.dec.ReportDecisions(as(checkerToken), tt.req)
			wantViolations(t, err, tt.fields...)
		})
	}
	// Nothing of the refused calls was counted.
	rec := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body, _ := io.ReadAll(rec.Result().Body); strings.Contains(string(body), "corsd_reported_decisions_total{") {
		t.Errorf("refused reports were counted:\n%s", body)
	}
}

func TestReportDecisions(t *testing.T) {
	var logs corsdtest.Logs
	e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...), WithDecisionAuth(), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))}})
	e.create("acme", acme())
	allowed := &corsdv1.DecisionReport{
		Policy: "policies/acme", PolicyRevision: 1, Kind: corsdv1.DecisionKind_DECISION_KIND_PREFLIGHT,
		Allowed: true, Reason: corsdv1.Reason_REASON_ALLOWED, Origin: "https://app.example.com", Count: 7,
	}
	deleted := refusedReport(2)
	deleted.Policy = "policies/gone"
	req := &corsdv1.ReportDecisionsRequest{Reporter: "checkout-7f9c", Reports: []*corsdv1.DecisionReport{refusedReport(3), allowed, deleted, refusedReport(2)}}

	// Reporting needs the check scope, as deciding does.
	_, err := e.dec.ReportDecisions(as(readerToken), req)
	wantCode(t, err, codes.PermissionDenied)

	resp, err := e.dec.ReportDecisions(as(checkerToken), req)
	if err != nil {
		t.Fatalf("ReportDecisions: %v", err)
	}
	if resp.GetRecorded() != 3 || resp.GetDropped() != 1 {
		t.Errorf("recorded %d, dropped %d; want 3, 1", resp.GetRecorded(), resp.GetDropped())
	}

	rec := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	for _, want := range []string{
		`corsd_reported_decisions_total{kind="actual",policy="policies/acme",reason="origin_not_allowed",report_only="true",result="refused"} 5`,
		`corsd_reported_decisions_total{kind="preflight",policy="policies/acme",reason="allowed",report_only="false",result="allowed"} 7`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), "policies/gone") {
		t.Errorf("/metrics has a series for a policy corsd does not have")
	}
	// corsd's own decision counter is untouched: reported decisions are
	// not corsd's.
	if strings.Contains(string(body), `corsd_decisions_total{kind="actual",policy="policies/acme"`) {
		t.Errorf("reports were counted as corsd's own decisions")
	}

	// The decision log has the report-only refusals, with who reported them.
	lines := strings.Count(logs.String(), `"msg":"reported decision"`)
	if lines != 2 {
		t.Errorf("%d reported-decision log lines, want 2 (the report-only refusals):\n%s", lines, logs.String())
	}
	for _, want := range []string{`"reporter":"checkout-7f9c"`, `"caller":"checker"`, `"origin":"https://evil.example"`, `"count":3`, `"message":"report only: origin https://evil.example is not in policies/acme"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("decision log lacks %s:\n%s", want, logs.String())
		}
	}

	// Deleting the policy drops its reported series.
	if _, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/acme"}); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body, _ := io.ReadAll(rec.Result().Body); strings.Contains(string(body), `corsd_reported_decisions_total{`) {
		t.Errorf("/metrics still has reported series of the deleted policy")
	}
}
