package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Page sizes of the List calls.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// maxPageBytes bounds the encoded items of one List page, with a
	// margin under the 4 MiB a gRPC client accepts by default. A page
	// always holds at least one item, so a larger item is sent alone.
	maxPageBytes = 3 << 20
	// listChunk is how many items a List call reads from the store at a
	// time, so that a page of large items stops early instead of decoding
	// a thousand of them.
	listChunk = 32
	// maxMaskPaths bounds an update mask: Policy has far fewer fields.
	maxMaskPaths = 64
	// itemOverhead is a repeated field's tag and length prefix, at most.
	itemOverhead = 6
)

// fitBytes returns how many leading items fit in budget bytes, and their
// size. With first set the first item is taken whatever its size.
func fitBytes[M proto.Message](items []M, budget int, first bool) (n, used int) {
	for i, m := range items {
		sz := proto.Size(m) + itemOverhead
		if used+sz > budget && (i > 0 || !first) {
			return i, used
		}
		used += sz
	}
	return len(items), used
}

// policyService implements corsd.v1.PolicyService. Every write validates
// the whole resulting policy with policypb.Normalize and stores nothing
// when it is invalid; after a successful write the policy is applied to the
// live snapshot before the call returns.
type policyService struct {
	corsdv1.UnimplementedPolicyServiceServer
	s *Server
}

// outputOnly are the Policy fields a client cannot set.
var outputOnly = map[protoreflect.Name]bool{"name": true, "revision": true, "etag": true, "create_time": true, "update_time": true}

// writableFields are the Policy fields that UpdatePolicy may replace.
var writableFields = sync.OnceValue(func() []protoreflect.FieldDescriptor {
	fds := (&corsdv1.Policy{}).ProtoReflect().Descriptor().Fields()
	var out []protoreflect.FieldDescriptor
	for i := range fds.Len() {
		if fd := fds.Get(i); !outputOnly[fd.Name()] {
			out = append(out, fd)
		}
	}
	return out
})

// copyFields sets the fields fds of dst to their values in src (clearing
// those src does not set). src must not be used afterwards.
func copyFields(dst, src *corsdv1.Policy, fds []protoreflect.FieldDescriptor) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	for _, fd := range fds {
		if s.Has(fd) {
			d.Set(fd, s.Get(fd))
		} else {
			d.Clear(fd)
		}
	}
}

// CreatePolicy creates a policy.
func (ps *policyService) CreatePolicy(ctx context.Context, req *corsdv1.CreatePolicyRequest) (*corsdv1.CreatePolicyResponse, error) {
	p, err := ps.createPolicy(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.CreatePolicyResponse{Policy: p}, nil
}

func (ps *policyService) createPolicy(ctx context.Context, req *corsdv1.CreatePolicyRequest) (*corsdv1.Policy, error) {
	if err := checkID("policy_id", req.GetPolicyId()); err != nil {
		return nil, err
	}
	if req.GetPolicy() == nil {
		return nil, badField("policy", "", "is required", "send the policy to create (it may be empty: {})")
	}
	name := namePrefix + req.GetPolicyId()
	in := &corsdv1.Policy{Name: name}
	copyFields(in, proto.Clone(req.GetPolicy()).(*corsdv1.Policy), writableFields())
	norm, err := ps.s.validate(name, in, "policy.")
	if err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		if _, err := ps.s.store.Get(ctx, name); err == nil {
			return nil, fmt.Errorf("server: %s: %w", name, store.ErrExists)
		} else if !isNotFound(err) {
			return nil, err
		}
		if err := ps.s.checkHostsDryRun(norm); err != nil {
			return nil, err
		}
		return norm, nil
	}
	start := time.Now()
	stored, err := ps.s.store.Create(ctx, norm)
	ps.s.observeWrite("create", start)
	if err != nil {
		return nil, err
	}
	ps.s.live.put(stored, false)
	ps.s.log.InfoContext(ctx, "policy created", "policy", name, "revision", stored.GetRevision(), "actor", store.Actor(ctx))
	return stored, nil
}

// validate normalizes p (named name). Field paths in errors get prefix.
// That no other policy governs its hosts is the store's to check, inside
// the write transaction (a *store.HostConflictError).
func (s *Server) validate(name string, p *corsdv1.Policy, prefix string) (*corsdv1.Policy, error) {
	norm, _, err := policypb.Normalize(p)
	if err != nil {
		return nil, invalidPolicy(prefix, err)
	}
	norm.Name = name
	return norm, nil
}

// checkHostsDryRun tells a validate_only call what the store would refuse,
// as far as the snapshot knows: the store's error, from the snapshot.
func (s *Server) checkHostsDryRun(p *corsdv1.Policy) error {
	for i, h := range p.GetHosts() {
		if owner := s.live.hostOwner(p.GetName(), h); owner != "" {
			return fmt.Errorf("server: policy %q: %w", p.GetName(), &store.HostConflictError{Index: i, Host: h, Owner: owner})
		}
	}
	return nil
}

// GetPolicy returns one policy.
func (ps *policyService) GetPolicy(ctx context.Context, req *corsdv1.GetPolicyRequest) (*corsdv1.GetPolicyResponse, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, toStatus(ctx, err)
	}
	p, err := ps.s.store.Get(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.GetPolicyResponse{Policy: p}, nil
}

// pageSize validates a requested page size and applies the default and
// the maximum.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, badField("page_size", strconv.Itoa(int(n)), "is negative", fmt.Sprintf("use 1 to %d, or 0 for %d", maxPageSize, defaultPageSize))
	case n == 0:
		return defaultPageSize, nil
	case n > maxPageSize:
		return maxPageSize, nil
	}
	return int(n), nil
}

// ListPolicies lists policies in name order.
func (ps *policyService) ListPolicies(ctx context.Context, req *corsdv1.ListPoliciesRequest) (*corsdv1.ListPoliciesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	page, err := ps.listPage(ctx, size, req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.ListPoliciesResponse{Policies: page.Policies, NextPageToken: page.NextPageToken}, nil
}

// listPage reads up to size policies after token in chunks, and stops
// early when the next one would take the page past maxPageBytes.
func (ps *policyService) listPage(ctx context.Context, size int, token string) (store.ListPage, error) {
	var out store.ListPage
	budget := maxPageBytes
	for len(out.Policies) < size {
		n := min(size-len(out.Policies), listChunk)
		page, used, err := ps.fitList(ctx, n, token, budget, len(out.Policies) == 0)
		if err != nil {
			return store.ListPage{}, err
		}
		out.Policies = append(out.Policies, page.Policies...)
		budget -= used
		token = page.NextPageToken
		if token == "" || len(page.Policies) < n {
			break
		}
	}
	out.NextPageToken = token
	return out, nil
}

// fitList reads up to n policies after token and keeps those that fit in
// budget, with the store's token after the last one kept. The store's
// tokens are opaque, so a page that does not fit is read again, shorter;
// n shrinks on every round, so this ends.
func (ps *policyService) fitList(ctx context.Context, n int, token string, budget int, first bool) (store.ListPage, int, error) {
	for {
		page, err := ps.s.store.List(ctx, n, token)
		if err != nil {
			return store.ListPage{}, 0, err
		}
		k, used := fitBytes(page.Policies, budget, first)
		switch {
		case k == len(page.Policies):
			return page, used, nil
		case k == 0:
			return store.ListPage{NextPageToken: token}, 0, nil
		}
		n = k
	}
}

// maskFields returns the fields an update mask names: every writable field
// for an empty mask or "*".
func maskFields(m *fieldmaskpb.FieldMask) ([]protoreflect.FieldDescriptor, error) {
	if len(m.GetPaths()) == 0 {
		return writableFields(), nil
	}
	if n := len(m.GetPaths()); n > maxMaskPaths {
		return nil, badField("update_mask.paths", "", fmt.Sprintf("has %d paths, more than the limit of %d", n, maxMaskPaths), "name each field of Policy once, or use \"*\"")
	}
	desc := (&corsdv1.Policy{}).ProtoReflect().Descriptor().Fields()
	seen := map[protoreflect.Name]bool{}
	var out []protoreflect.FieldDescriptor
	e := &badRequestError{}
	for i, path := range m.GetPaths() {
		field := fmt.Sprintf("update_mask.paths[%d]", i)
		if path == "*" {
			if len(m.GetPaths()) > 1 {
				e.violations = append(e.violations, violation{field: field, description: `"*" must be the only path`})
				continue
			}
			return writableFields(), nil
		}
		fd := desc.ByName(protoreflect.Name(path))
		switch {
		case fd == nil && strings.Contains(path, "."):
			e.violations = append(e.violations, violation{field: field, description: fmt.Sprintf("%q: nested paths are not supported; name the top-level field", path)})
		case fd == nil:
			e.violations = append(e.violations, violation{field: field, description: fmt.Sprintf("%q is not a field of Policy; use the proto field names, such as origins or max_age", path)})
		case outputOnly[fd.Name()]:
			e.violations = append(e.violations, violation{field: field, description: fmt.Sprintf("%q cannot be updated (it is the name or output only)", path)})
		case !seen[fd.Name()]:
			seen[fd.Name()] = true
			out = append(out, fd)
		}
	}
	if len(e.violations) > 0 {
		return nil, e
	}
	return out, nil
}

// UpdatePolicy replaces the fields named in the update mask.
func (ps *policyService) UpdatePolicy(ctx context.Context, req *corsdv1.UpdatePolicyRequest) (*corsdv1.UpdatePolicyResponse, error) {
	p, err := ps.updatePolicy(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.UpdatePolicyResponse{Policy: p}, nil
}

func (ps *policyService) updatePolicy(ctx context.Context, req *corsdv1.UpdatePolicyRequest) (*corsdv1.Policy, error) {
	if req.GetPolicy() == nil {
		return nil, badField("policy", "", "is required", "send the policy with its name and the fields to change")
	}
	name := req.GetPolicy().GetName()
	if err := checkName("policy.name", name); err != nil {
		return nil, err
	}
	fds, err := maskFields(req.GetUpdateMask())
	if err != nil {
		return nil, err
	}
	mutate := func(cur *corsdv1.Policy) error {
		next := proto.Clone(cur).(*corsdv1.Policy)
		copyFields(next, proto.Clone(req.GetPolicy()).(*corsdv1.Policy), fds)
		norm, err := ps.s.validate(name, next, "policy.")
		if err != nil {
			return err
		}
		copyFields(cur, norm, writableFields())
		return nil
	}
	pre := store.Precondition{Etag: req.GetPolicy().GetEtag()}
	if req.GetValidateOnly() {
		return ps.s.dryRun(ctx, name, pre, mutate)
	}
	return ps.s.update(ctx, "update", name, pre, mutate)
}

// update runs a store update and applies its result to the snapshot.
func (s *Server) update(ctx context.Context, op, name string, pre store.Precondition, mutate store.MutateFunc) (*corsdv1.Policy, error) {
	start := time.Now()
	stored, err := s.store.Update(ctx, name, pre, mutate)
	s.observeWrite(op, start)
	if err != nil {
		return nil, err
	}
	s.live.put(stored, false)
	s.log.InfoContext(ctx, "policy updated", "op", op, "policy", name, "revision", stored.GetRevision(), "actor", store.Actor(ctx))
	return stored, nil
}

// dryRun does what update would, without storing: validate_only.
func (s *Server) dryRun(ctx context.Context, name string, pre store.Precondition, mutate store.MutateFunc) (*corsdv1.Policy, error) {
	cur, err := s.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if pre.Etag != "" && pre.Etag != cur.GetEtag() {
		return nil, fmt.Errorf("server: %s: etag %q is stale: %w", name, pre.Etag, store.ErrConflict)
	}
	if err := mutate(cur); err != nil {
		return nil, err
	}
	if err := s.checkHostsDryRun(cur); err != nil {
		return nil, err
	}
	return cur, nil
}

// DeletePolicy deletes a policy.
func (ps *policyService) DeletePolicy(ctx context.Context, req *corsdv1.DeletePolicyRequest) (*corsdv1.DeletePolicyResponse, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, toStatus(ctx, err)
	}
	start := time.Now()
	rev, err := ps.s.store.Delete(ctx, req.GetName(), store.Precondition{Etag: req.GetEtag()})
	ps.s.observeWrite("delete", start)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	ps.s.live.del(req.GetName(), rev, false)
	ps.s.log.InfoContext(ctx, "policy deleted", "policy", req.GetName(), "revision", rev, "actor", store.Actor(ctx))
	return &corsdv1.DeletePolicyResponse{Revision: rev}, nil
}

// AddOrigin adds a rule. A pattern that normalizes to a rule already
// present is AlreadyExists: replacing that rule would silently change its
// credentials, which only an explicit UpdatePolicy does.
func (ps *policyService) AddOrigin(ctx context.Context, req *corsdv1.AddOriginRequest) (*corsdv1.AddOriginResponse, error) {
	p, err := ps.addOrigin(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.AddOriginResponse{Policy: p}, nil
}

func (ps *policyService) addOrigin(ctx context.Context, req *corsdv1.AddOriginRequest) (*corsdv1.Policy, error) {
	name := req.GetPolicy()
	if err := checkName("policy", name); err != nil {
		return nil, err
	}
	if req.GetOrigin() == nil {
		return nil, badField("origin", "", "is required", "send the rule to add, such as {\"pattern\": \"https://app.example.com\"}")
	}
	if req.GetOrigin().GetPattern() == "" {
		return nil, badField("origin.pattern", "", "is required", "set an origin such as https://app.example.com")
	}
	mutate := func(cur *corsdv1.Policy) error {
		next := proto.Clone(cur).(*corsdv1.Policy)
		rule := proto.Clone(req.GetOrigin()).(*corsdv1.OriginRule)
		if pattern, err := policy.NormalizeOrigin(rule.GetPattern()); err == nil {
			for i, o := range next.GetOrigins() {
				// Stored patterns are normalized already.
				if o.GetPattern() == pattern {
					return &originExistsError{index: i, pattern: pattern}
				}
			}
		}
		next.Origins = append(next.Origins, rule)
		added := fmt.Sprintf("origins[%d]", len(next.Origins)-1)
		norm, _, err := policypb.Normalize(next)
		if err != nil {
			// Problems of the added rule are the request's origin field.
			return remapFields(err, func(f string) string {
				if rest, ok := strings.CutPrefix(f, added); ok {
					return "origin" + rest
				}
				return f
			})
		}
		copyFields(cur, norm, writableFields())
		return nil
	}
	return ps.s.update(ctx, "add_origin", name, store.Precondition{Etag: req.GetEtag()}, mutate)
}

// originExistsError is an AddOrigin whose pattern normalizes to the stored
// rule origins[index], whose (normalized) pattern is pattern.
type originExistsError struct {
	index   int
	pattern string
}

func (e *originExistsError) Error() string {
	return fmt.Sprintf("server: origin already present as origins[%d] %q", e.index, e.pattern)
}

// RemoveOrigin removes the rule with the given (normalized) pattern.
func (ps *policyService) RemoveOrigin(ctx context.Context, req *corsdv1.RemoveOriginRequest) (*corsdv1.RemoveOriginResponse, error) {
	p, err := ps.removeOrigin(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &corsdv1.RemoveOriginResponse{Policy: p}, nil
}

func (ps *policyService) removeOrigin(ctx context.Context, req *corsdv1.RemoveOriginRequest) (*corsdv1.Policy, error) {
	name := req.GetPolicy()
	if err := checkName("policy", name); err != nil {
		return nil, err
	}
	raw := req.GetPattern()
	if raw == "" {
		return nil, badField("pattern", "", "is required", "set the pattern of the rule to remove")
	}
	pattern, err := policy.NormalizeOrigin(raw)
	if err != nil {
		return nil, badField("pattern", raw, "is not a valid origin pattern", err.Error())
	}
	mutate := func(cur *corsdv1.Policy) error {
		for i, o := range cur.GetOrigins() {
			if o.GetPattern() == pattern || o.GetPattern() == raw {
				// Removing a rule cannot make a policy invalid, so the rest
				// is not validated again: an operator can always remove a
				// rule, even from a policy a newer engine would refuse.
				cur.Origins = append(cur.Origins[:i:i], cur.Origins[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("server: origin %q is not in %s: %w", pattern, name, store.ErrNotFound)
	}
	return ps.s.update(ctx, "remove_origin", name, store.Precondition{Etag: req.GetEtag()}, mutate)
}

// ListChanges pages through the change log.
func (ps *policyService) ListChanges(ctx context.Context, req *corsdv1.ListChangesRequest) (*corsdv1.ListChangesResponse, error) {
	resp, err := ps.listChanges(ctx, req)
	return resp, toStatus(ctx, err)
}

func (ps *policyService) listChanges(ctx context.Context, req *corsdv1.ListChangesRequest) (*corsdv1.ListChangesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if req.GetPolicy() != "" {
		if err := checkName("policy", req.GetPolicy()); err != nil {
			return nil, err
		}
	}
	since := req.GetStartRevision()
	if since < 0 {
		return nil, badField("start_revision", strconv.FormatInt(since, 10), "is negative", "use 0 for the oldest retained change")
	}
	if req.GetPageToken() != "" {
		if since, err = decodeChangesToken(req.GetPageToken(), req.GetPolicy()); err != nil {
			return nil, err
		}
	}
	// Read in chunks, one more than asked for each: the extra tells
	// whether more follow. Stop early when the page would pass
	// maxPageBytes.
	resp := &corsdv1.ListChangesResponse{}
	budget, more := maxPageBytes, false
	for len(resp.Changes) < size {
		n := min(size-len(resp.Changes), listChunk)
		changes, err := ps.s.store.Changes(ctx, store.ChangesQuery{Since: since, Limit: n + 1, Name: req.GetPolicy()})
		if err != nil {
			return nil, err
		}
		got := changes[:min(n, len(changes))]
		k, used := fitBytes(got, budget, len(resp.Changes) == 0)
		resp.Changes = append(resp.Changes, got[:k]...)
		budget -= used
		more = k < len(got) || len(changes) > n
		if !more || k < len(got) {
			break
		}
		since = got[k-1].GetRevision()
	}
	if more && len(resp.Changes) > 0 {
		resp.NextPageToken = encodeChangesToken(resp.Changes[len(resp.Changes)-1].GetRevision(), req.GetPolicy())
	}
	return resp, nil
}

// Change page tokens carry the last revision returned and the policy
// filter they were made for.
const changesTokenPrefix = "c1:"

func encodeChangesToken(rev int64, filter string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(changesTokenPrefix + strconv.FormatInt(rev, 10) + ":" + filter))
}

func decodeChangesToken(tok, filter string) (int64, error) {
	bad := badField("page_token", tok, "is not a page token of this call", "pass next_page_token from the previous response, with the same policy filter")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, bad
	}
	rest, ok := strings.CutPrefix(string(raw), changesTokenPrefix)
	if !ok {
		return 0, bad
	}
	revStr, tokFilter, ok := strings.Cut(rest, ":")
	if !ok || tokFilter != filter {
		return 0, bad
	}
	rev, err := strconv.ParseInt(revStr, 10, 64)
	if err != nil || rev < 0 {
		return 0, bad
	}
	return rev, nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
