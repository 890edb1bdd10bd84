package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// maxInputSize bounds a policy file.
const maxInputSize = 32 << 20

const namePrefix = "policies/"

// readPolicyFile reads policies from path ("-" for stdin); see
// parsePolicies for the accepted shapes.
func readPolicyFile(path string, stdin io.Reader) ([]*corsdv1.Policy, error) {
	var (
		r   io.Reader
		src = path
	)
	if path == "-" {
		r, src = stdin, "standard input"
	} else {
		f, err := os.Open(path) //nolint:gosec // G304: reading the file the user named is the point
		if err != nil {
			return nil, fmt.Errorf("corsctl: %w", err)
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("corsctl: read %s: %w", src, err)
	}
	if len(data) > maxInputSize {
		return nil, fmt.Errorf("corsctl: %s is larger than %d bytes", src, maxInputSize)
	}
	ps, err := parsePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("corsctl: %s: %w", src, err)
	}
	return ps, nil
}

// parsePolicies parses YAML or JSON holding one policy, a list of policies,
// or an object {"policies": [...]} (the shape of ListPoliciesResponse), in
// one or more YAML documents separated by "---" lines. Fields use the proto
// names (allowed_methods) or their JSON names (allowedMethods); unknown
// fields are errors. Every policy needs a name, `policies/{id}` or a bare
// id, and names must be unique.
func parsePolicies(data []byte) ([]*corsdv1.Policy, error) {
	var (
		out  []*corsdv1.Policy
		seen = map[string]int{}
	)
	for di, doc := range splitYAMLDocuments(data) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", di+1, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || bytes.Equal(j, []byte("null")) {
			continue
		}
		var items []json.RawMessage
		switch j[0] {
		case '[':
			if err := json.Unmarshal(j, &items); err != nil {
				return nil, fmt.Errorf("document %d: %w", di+1, err)
			}
		case '{':
			var probe map[string]json.RawMessage
			if err := json.Unmarshal(j, &probe); err != nil {
				return nil, fmt.Errorf("document %d: %w", di+1, err)
			}
			if list, ok := probe["policies"]; ok && probe["name"] == nil {
				if err := json.Unmarshal(list, &items); err != nil {
					return nil, fmt.Errorf("document %d: policies: %w", di+1, err)
				}
				break
			}
			items = []json.RawMessage{j}
		default:
			return nil, fmt.Errorf("document %d: want a policy (an object) or a list of policies", di+1)
		}
		for _, it := range items {
			n := len(out) + 1
			p := new(corsdv1.Policy)
			if err := protojson.Unmarshal(it, p); err != nil {
				return nil, fmt.Errorf("policy #%d: %w", n, err)
			}
			if p.GetName() == "" {
				return nil, fmt.Errorf("policy #%d has no name; set name: policies/{id}", n)
			}
			p.Name = policyName(p.GetName())
			if prev, dup := seen[p.GetName()]; dup {
				return nil, fmt.Errorf("policy #%d: %s already appears as policy #%d", n, p.GetName(), prev)
			}
			seen[p.GetName()] = n
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no policy found")
	}
	return out, nil
}

// splitYAMLDocuments splits data at lines that hold only "---".
func splitYAMLDocuments(data []byte) [][]byte {
	var (
		docs [][]byte
		cur  []byte
	)
	for line := range bytes.Lines(data) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// policyName accepts `policies/{id}` or a bare id. The server validates the
// id.
func policyName(s string) string {
	if strings.HasPrefix(s, namePrefix) {
		return s
	}
	return namePrefix + s
}

// policyID returns the id of `policies/{id}`.
func policyID(name string) string { return strings.TrimPrefix(name, namePrefix) }
