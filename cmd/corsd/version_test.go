package main

import (
	"errors"
	"io"
	"testing"
)

func TestVersionFlag(t *testing.T) {
	lookup := func(string) (string, bool) { return "", false }
	if _, err := parseFlags([]string{"--version"}, lookup, io.Discard); !errors.Is(err, errShowVersion) {
		t.Errorf("parseFlags(--version) error = %v, want errShowVersion", err)
	}
	// --version wins over flags that would fail to serve: nothing is checked.
	if _, err := parseFlags([]string{"--version", "--db", ""}, lookup, io.Discard); !errors.Is(err, errShowVersion) {
		t.Errorf("parseFlags(--version --db '') error = %v, want errShowVersion", err)
	}
}
