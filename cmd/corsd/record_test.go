package main

import (
	"io"
	"strings"
	"testing"

	"github.com/corsd/corsd/server"
)

func TestParseFlagsDecisionRecord(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    server.DecisionRecord
		wantErr string
	}{
		{name: "default", want: server.DecisionRecordMinimal},
		{name: "flag", args: []string{"--decision-record", "full"}, want: server.DecisionRecordFull},
		{name: "env", env: map[string]string{"CORSD_DECISION_RECORD": "none"}, want: server.DecisionRecordNone},
		{name: "flag wins over env", args: []string{"--decision-record=minimal"}, env: map[string]string{"CORSD_DECISION_RECORD": "full"}, want: server.DecisionRecordMinimal},
		{name: "bad flag", args: []string{"--decision-record", "all"}, wantErr: "usage error"},
		{name: "bad env", env: map[string]string{"CORSD_DECISION_RECORD": "Full"}, wantErr: "CORSD_DECISION_RECORD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			c, err := parseFlags(tt.args, lookup, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.decisionRecord != tt.want {
				t.Errorf("decisionRecord = %v, want %v", c.decisionRecord, tt.want)
			}
		})
	}
}
