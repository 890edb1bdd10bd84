package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store"
)

// bootstrapActor is the change-log actor of policies created by --bootstrap.
const bootstrapActor = "bootstrap"

// maxBootstrapSize bounds the bootstrap file.
const maxBootstrapSize = 16 << 20

// bootstrapPolicy is one validated, normalized policy of the bootstrap file.
type bootstrapPolicy struct {
	p *corsdv1.Policy
}

// loadBootstrap reads a YAML or JSON list of policies in their protojson
// form (each with its name), validates every one and returns them
// normalized; it reports every problem at once.
func loadBootstrap(path string) ([]*bootstrapPolicy, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if len(data) > maxBootstrapSize {
		return nil, fmt.Errorf("bootstrap: %s is larger than %d bytes", path, maxBootstrapSize)
	}
	out, err := parseBootstrap(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", path, err)
	}
	return out, nil
}

func parseBootstrap(data []byte) ([]*bootstrapPolicy, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	var items []json.RawMessage
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil // an empty file
	}
	if err := json.Unmarshal(js, &items); err != nil {
		return nil, fmt.Errorf("want a list of policies: %w", err)
	}
	var (
		out   []*bootstrapPolicy
		errs  []error
		names = map[string]int{}
	)
	for i, raw := range items {
		p := &corsdv1.Policy{}
		if err := protojson.Unmarshal(raw, p); err != nil {
			errs = append(errs, fmt.Errorf("policy %d: %w", i, err))
			continue
		}
		where := fmt.Sprintf("policy %d (%s)", i, p.GetName())
		name, err := server.NormalizePolicyName(p.GetName())
		if err != nil || p.GetName() != name {
			errs = append(errs, fmt.Errorf("%s: name must be policies/{id} with id matching [a-z][a-z0-9-]{0,62}", where))
			continue
		}
		if j, dup := names[name]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicates policy %d", where, j))
			continue
		}
		names[name] = i
		if p.GetRevision() != 0 || p.GetEtag() != "" || p.GetCreateTime() != nil || p.GetUpdateTime() != nil {
			errs = append(errs, fmt.Errorf("%s: revision, etag, create_time and update_time are output only; remove them", where))
			continue
		}
		norm, _, err := policypb.Normalize(p)
		if err != nil {
			if fes := policy.FieldErrors(err); len(fes) > 0 {
				for _, fe := range fes {
					errs = append(errs, fmt.Errorf("%s: %s: %s (got %q); %s", where, fe.Field, fe.Reason, fe.Value, fe.Fix))
				}
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		norm.Name = name
		out = append(out, &bootstrapPolicy{p: norm})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d problem(s):\n  %w", len(errs), joinIndented(errs))
	}
	return out, nil
}

// joinIndented joins errors one per line, indented.
func joinIndented(errs []error) error {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return errors.New(strings.Join(lines, "\n  "))
}

// applyBootstrap creates the policies that do not exist; it never changes
// an existing one, so it is idempotent. A policy deleted through the API is
// created again at the next start while it stays in the bootstrap file.
func applyBootstrap(ctx context.Context, st store.Store, seed []*bootstrapPolicy, log *slog.Logger) error {
	ctx = store.WithActor(ctx, bootstrapActor)
	created := 0
	for _, b := range seed {
		_, err := st.Get(ctx, b.p.GetName())
		if err == nil {
			log.Debug("bootstrap policy exists; left unchanged", "policy", b.p.GetName())
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bootstrap %s: %w", b.p.GetName(), err)
		}
		stored, err := st.Create(ctx, b.p)
		var hostTaken *store.HostConflictError
		switch {
		case errors.As(err, &hostTaken):
			// The store refuses a host another policy governs, bootstrap or
			// not: say so instead of starting without the policy.
			return fmt.Errorf("bootstrap %s: %w", b.p.GetName(), err)
		case errors.Is(err, store.ErrExists):
			continue // created meanwhile, by another replica
		case err != nil:
			return fmt.Errorf("bootstrap %s: %w", b.p.GetName(), err)
		}
		created++
		log.Info("bootstrap policy created", "policy", stored.GetName(), "revision", stored.GetRevision())
	}
	log.Info("bootstrap applied", "policies", len(seed), "created", created)
	return nil
}
