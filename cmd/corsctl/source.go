package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// maxSourceFiles bounds the policy files read from one directory.
const maxSourceFiles = 10000

// sourcePolicy is a policy read from a file, with the file it came from.
type sourcePolicy struct {
	policy *corsdv1.Policy
	file   string
}

// readPolicySource reads the policies of path: a file (see readPolicyFile;
// "-" for stdin) or a directory, whose *.yaml, *.yml and *.json files are
// read in name order (not its subdirectories, nor hidden files). A policy
// name may appear once across all of them. The whole source is bounded by
// maxInputSize bytes and maxSourceFiles files.
func readPolicySource(path string, stdin io.Reader) ([]sourcePolicy, error) {
	fi, err := os.Stat(path)
	if path == "-" || (err == nil && !fi.IsDir()) {
		ps, err := readPolicyFile(path, stdin)
		if err != nil {
			return nil, err
		}
		out := make([]sourcePolicy, len(ps))
		for i, p := range ps {
			out[i] = sourcePolicy{policy: p, file: path}
		}
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("corsctl: %w", err)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("corsctl: %w", err)
	}
	var (
		out   []sourcePolicy
		seen  = map[string]string{}
		total int64
		files int
	)
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		if files++; files > maxSourceFiles {
			return nil, fmt.Errorf("corsctl: %s holds more than %d policy files", path, maxSourceFiles)
		}
		file := filepath.Join(path, name)
		if info, err := e.Info(); err == nil {
			if total += info.Size(); total > maxInputSize {
				return nil, fmt.Errorf("corsctl: the files of %s are larger than %d bytes together", path, maxInputSize)
			}
		}
		ps, err := readPolicyFile(file, nil)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if prev, dup := seen[p.GetName()]; dup {
				return nil, fmt.Errorf("corsctl: %s is defined in both %s and %s; keep one", p.GetName(), prev, file)
			}
			seen[p.GetName()] = file
			out = append(out, sourcePolicy{policy: p, file: file})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("corsctl: no policy file (*.yaml, *.yml, *.json) in %s", path)
	}
	return out, nil
}

// authored returns a copy of p with only what a person writes: no
// revision, etag or timestamps.
func authored(p *corsdv1.Policy) *corsdv1.Policy {
	return writable(p)
}

// authoredJSON renders p's authored fields as protojson, fields in
// declaration order (name first) and default values left out.
func authoredJSON(p *corsdv1.Policy) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(authored(p))
	if err != nil {
		return nil, fmt.Errorf("corsctl: encode %s: %w", p.GetName(), err)
	}
	return b, nil
}

// policyYAML renders policies as YAML in a stable form: fields in the
// order of the API (name, description, origins, ...), so that a policy
// repository diffs cleanly. One policy is a mapping; asList makes a list.
func policyYAML(asList bool, ps ...*corsdv1.Policy) ([]byte, error) {
	var docs []any
	for _, p := range ps {
		j, err := authoredJSON(p)
		if err != nil {
			return nil, err
		}
		v, err := orderedJSON(j)
		if err != nil {
			return nil, fmt.Errorf("corsctl: encode %s: %w", p.GetName(), err)
		}
		docs = append(docs, v)
	}
	var v any = docs
	if !asList {
		if len(docs) != 1 {
			return nil, fmt.Errorf("corsctl: encode: want one policy, have %d", len(docs))
		}
		v = docs[0]
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("corsctl: encode: %w", err)
	}
	return out, nil
}

// orderedJSON decodes one JSON value keeping the order of object keys
// (as yaml.MapSlice), so that YAML output follows protojson's field order.
func orderedJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return decodeOrdered(dec)
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var m yaml.MapSlice
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				m = append(m, yaml.MapItem{Key: k, Value: v})
			}
			_, err := dec.Token() // '}'
			return m, err
		case '[':
			l := []any{}
			for dec.More() {
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token() // ']'
			return l, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		return t.Float64()
	default:
		return t, nil
	}
}

// exportFileName is the file of policy p in an exported directory.
func exportFileName(p *corsdv1.Policy) string { return policyID(p.GetName()) + ".yaml" }

// writeExportDir writes one file per policy into dir (created if missing)
// and returns the paths written. Files of policies that no longer exist
// are left alone: export never deletes.
func writeExportDir(dir string, ps []*corsdv1.Policy) ([]string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("corsctl: %w", err)
	}
	var paths []string
	for _, p := range ps {
		b, err := policyYAML(false, p)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, exportFileName(p))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("corsctl: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// sortedByName returns ps sorted by name.
func sortedByName(ps []*corsdv1.Policy) []*corsdv1.Policy {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b *corsdv1.Policy) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// clonePolicy returns a deep copy of p.
func clonePolicy(p *corsdv1.Policy) *corsdv1.Policy { return proto.Clone(p).(*corsdv1.Policy) }
