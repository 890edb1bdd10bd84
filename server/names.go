package server

import (
	"fmt"
	"strings"
)

const (
	namePrefix = "policies/"
	// maxIDLen is the longest policy id: one letter and 62 more characters.
	maxIDLen = 63
)

// validID reports whether id matches [a-z][a-z0-9-]{0,62}.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id[0] < 'a' || id[0] > 'z' {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// checkID validates a policy id given in field.
func checkID(field, id string) error {
	if id == "" {
		return badField(field, id, "is required", "set it to an id matching [a-z][a-z0-9-]{0,62}")
	}
	if !validID(id) {
		return badField(field, id, "is not a valid policy id", "use 1 to 63 characters: a lower-case letter, then lower-case letters, digits or '-'")
	}
	return nil
}

// checkName validates a resource name `policies/{id}` given in field.
func checkName(field, name string) error {
	if name == "" {
		return badField(field, name, "is required", "set it to policies/{id}")
	}
	id, ok := strings.CutPrefix(name, namePrefix)
	if !ok || !validID(id) {
		return badField(field, name, "is not a valid policy name", "use policies/{id} where id matches [a-z][a-z0-9-]{0,62}")
	}
	return nil
}

// NormalizePolicyName accepts a policy name as `policies/{id}` or as a bare
// id and returns the full resource name. It fails when the id is invalid.
func NormalizePolicyName(s string) (string, error) {
	name := s
	if !strings.HasPrefix(s, namePrefix) {
		name = namePrefix + s
	}
	if !validID(strings.TrimPrefix(name, namePrefix)) {
		return "", fmt.Errorf("server: %q is not a valid policy name: use policies/{id} where id matches [a-z][a-z0-9-]{0,62}", s)
	}
	return name, nil
}
