package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// What a plan does to one policy.
type planAction int

const (
	actionUnchanged planAction = iota
	actionCreate
	actionUpdate
	actionDelete
)

// planItem is what apply would do to one policy, computed from the files
// (want) and what corsd holds (cur, with the etag it was read at).
type planItem struct {
	name   string
	action planAction
	want   *corsdv1.Policy // normalized, authored fields only; nil for a delete
	cur    *corsdv1.Policy // nil for a create
	file   string          // where want came from
}

// etag is the etag the plan was computed against; "" for a policy that
// did not exist.
func (it planItem) etag() string { return it.cur.GetEtag() }

// plan is the difference between the files and corsd.
type plan struct {
	items []planItem
	// extra names the policies corsd holds that the files do not, when
	// the plan does not prune them.
	extra  []string
	prune  bool
	digest string // of the wanted policies, to tie a saved plan to its files
}

func (p *plan) changes() int {
	n := 0
	for _, it := range p.items {
		if it.action != actionUnchanged {
			n++
		}
	}
	return n
}

// normalizeSource validates and normalizes every policy of src with the
// engine, as corsd does when it stores them, and reports every invalid
// policy at once.
func normalizeSource(src []sourcePolicy) ([]sourcePolicy, error) {
	out := make([]sourcePolicy, 0, len(src))
	var (
		b        strings.Builder
		problems int
	)
	for _, sp := range src {
		norm, _, err := policypb.Normalize(writable(sp.policy))
		if err != nil {
			fmt.Fprintf(&b, "\n  %s (%s):", sp.policy.GetName(), sp.file)
			fes := policy.FieldErrors(err)
			if len(fes) == 0 {
				problems++
				fmt.Fprintf(&b, "\n    %v", err)
			}
			for _, fe := range fes {
				problems++
				desc := fe.Reason
				if fe.Fix != "" {
					desc += "; " + fe.Fix
				}
				fmt.Fprintf(&b, "\n    %s: %s", fe.Field, desc)
			}
			continue
		}
		norm.Name = sp.policy.GetName()
		out = append(out, sourcePolicy{policy: authored(norm), file: sp.file})
	}
	if problems > 0 {
		noun := "problems"
		if problems == 1 {
			noun = "problem"
		}
		return nil, fmt.Errorf("corsctl: the policy files hold %d %s; nothing was sent to corsd:%s\nFix these fields and try again", problems, noun, b.String())
	}
	return out, nil
}

// makePlan compares the files with what corsd holds now.
func makePlan(ctx context.Context, c *client.Client, src []sourcePolicy, prune bool) (*plan, error) {
	want, err := normalizeSource(src)
	if err != nil {
		return nil, err
	}
	curList, err := c.ListAllPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	cur := make(map[string]*corsdv1.Policy, len(curList))
	for _, p := range curList {
		cur[p.GetName()] = p
	}
	pl := &plan{prune: prune}
	wanted := map[string]bool{}
	for _, sp := range want {
		name := sp.policy.GetName()
		wanted[name] = true
		it := planItem{name: name, want: sp.policy, cur: cur[name], file: sp.file}
		switch {
		case it.cur == nil:
			it.action = actionCreate
		case !proto.Equal(authored(it.cur), it.want):
			it.action = actionUpdate
		}
		pl.items = append(pl.items, it)
	}
	for _, p := range sortedByName(curList) {
		if wanted[p.GetName()] {
			continue
		}
		if prune {
			pl.items = append(pl.items, planItem{name: p.GetName(), action: actionDelete, cur: p})
		} else {
			pl.extra = append(pl.extra, p.GetName())
		}
	}
	// Deletes first (a policy renamed in git frees its hosts before its
	// successor claims them), then updates, then creates; within each, the
	// order of the files (deletes by name).
	rank := map[planAction]int{actionDelete: 0, actionUpdate: 1, actionCreate: 2, actionUnchanged: 3}
	slices.SortStableFunc(pl.items, func(a, b planItem) int { return rank[a.action] - rank[b.action] })
	pl.digest = digestOf(want)
	return pl, nil
}

// digestOf hashes the wanted policies, in name order.
func digestOf(want []sourcePolicy) string {
	ps := make([]*corsdv1.Policy, len(want))
	for i, sp := range want {
		ps[i] = sp.policy
	}
	h := sha256.New()
	for _, p := range sortedByName(ps) {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p) // a valid message always marshals
		_, _ = fmt.Fprintf(h, "%d:", len(b))
		_, _ = h.Write(b)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// describeItem writes the changes of one policy, one line per origin rule
// added, removed or changed and per other field changed, each indented by
// indent.
func describeItem(w io.Writer, it planItem, indent string) {
	var from, to *corsdv1.Policy
	switch it.action {
	case actionCreate:
		from, to = &corsdv1.Policy{}, it.want
	case actionDelete:
		from, to = authored(it.cur), &corsdv1.Policy{}
	case actionUpdate:
		from, to = authored(it.cur), it.want
	default:
		return
	}
	for _, line := range originChanges(from.GetOrigins(), to.GetOrigins()) {
		_, _ = fmt.Fprintf(w, "%s%s\n", indent, line)
	}
	if it.action != actionUpdate {
		return // a new or deleted policy is shown by its origins
	}
	for _, line := range fieldChanges(from, to) {
		_, _ = fmt.Fprintf(w, "%s%s\n", indent, line)
	}
}

// originChanges lists the origin rules added (+), removed (-) and changed
// (~) from a to b, keyed by pattern, in b's order then a's.
func originChanges(a, b []*corsdv1.OriginRule) []string {
	old := map[string]*corsdv1.OriginRule{}
	for _, r := range a {
		old[r.GetPattern()] = r
	}
	seen := map[string]bool{}
	var lines []string
	for _, r := range b {
		seen[r.GetPattern()] = true
		o, ok := old[r.GetPattern()]
		switch {
		case !ok:
			lines = append(lines, "+ origin "+r.GetPattern()+ruleFlags(r))
		case !proto.Equal(o, r):
			lines = append(lines, fmt.Sprintf("~ origin %s: %s", r.GetPattern(), ruleChange(o, r)))
		}
	}
	for _, r := range a {
		if !seen[r.GetPattern()] {
			lines = append(lines, "- origin "+r.GetPattern()+ruleFlags(r))
		}
	}
	return lines
}

// ruleFlags describes a rule's credential flags: " (credentials)".
func ruleFlags(r *corsdv1.OriginRule) string {
	var flags []string
	if r.GetAllowCredentials() {
		flags = append(flags, "credentials")
	}
	if r.GetDangerouslyAllowCredentialsUnderPublicSuffix() {
		flags = append(flags, "dangerously under a public suffix")
	}
	if r.GetDangerouslyAllowInsecureCredentials() {
		flags = append(flags, "dangerously insecure")
	}
	if len(flags) == 0 {
		return ""
	}
	return " (" + strings.Join(flags, ", ") + ")"
}

// ruleChange describes how rule a became b: "credentials no -> yes".
func ruleChange(a, b *corsdv1.OriginRule) string {
	var parts []string
	if a.GetAllowCredentials() != b.GetAllowCredentials() {
		parts = append(parts, fmt.Sprintf("credentials %s -> %s", yesNo(a.GetAllowCredentials()), yesNo(b.GetAllowCredentials())))
	}
	if a.GetDangerouslyAllowCredentialsUnderPublicSuffix() != b.GetDangerouslyAllowCredentialsUnderPublicSuffix() {
		parts = append(parts, fmt.Sprintf("dangerously_allow_credentials_under_public_suffix %v -> %v", a.GetDangerouslyAllowCredentialsUnderPublicSuffix(), b.GetDangerouslyAllowCredentialsUnderPublicSuffix()))
	}
	if a.GetDangerouslyAllowInsecureCredentials() != b.GetDangerouslyAllowInsecureCredentials() {
		parts = append(parts, fmt.Sprintf("dangerously_allow_insecure_credentials %v -> %v", a.GetDangerouslyAllowInsecureCredentials(), b.GetDangerouslyAllowInsecureCredentials()))
	}
	if a.GetDescription() != b.GetDescription() {
		parts = append(parts, fmt.Sprintf("description %q -> %q", a.GetDescription(), b.GetDescription()))
	}
	return strings.Join(parts, ", ")
}

// fieldChanges lists the fields other than name and origins that differ
// from a to b: "~ max_age: 10m0s -> 5m0s".
func fieldChanges(a, b *corsdv1.Policy) []string {
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	var lines []string
	for i := range fields.Len() {
		fd := fields.Get(i)
		if name := string(fd.Name()); name == "name" || name == "origins" {
			continue
		}
		if ra.Has(fd) == rb.Has(fd) && ra.Get(fd).Equal(rb.Get(fd)) {
			continue
		}
		lines = append(lines, fmt.Sprintf("~ %s: %s -> %s", fd.Name(), fieldValue(ra, fd), fieldValue(rb, fd)))
	}
	return lines
}

// fieldValue renders one field for a person.
func fieldValue(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
	if !m.Has(fd) {
		switch {
		case fd.IsList():
			return "[]"
		case fd.Kind() == protoreflect.MessageKind:
			return "(unset)"
		}
	}
	v := m.Get(fd)
	switch {
	case fd.IsList():
		l := v.List()
		parts := make([]string, l.Len())
		for i := range l.Len() {
			parts[i] = l.Get(i).String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case fd.Kind() == protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case fd.Kind() == protoreflect.MessageKind:
		if d, ok := v.Message().Interface().(*durationpb.Duration); ok {
			return d.AsDuration().String()
		}
		return fmt.Sprint(v.Message().Interface())
	case fd.Kind() == protoreflect.StringKind:
		return strconv.Quote(v.String())
	}
	return v.String()
}

// savedPlan is the file that diff --plan-out writes and apply --plan
// reads: the etag diff saw for every policy it compared ("" for one that
// did not exist), so that apply refuses when any of them changed since.
type savedPlan struct {
	Format string            `json:"format"`
	Prune  bool              `json:"prune"`
	Digest string            `json:"digest"`
	Etags  map[string]string `json:"etags"`
}

const planFormat = "corsctl-plan/v1"

func (p *plan) save(path string) error {
	sp := savedPlan{Format: planFormat, Prune: p.prune, Digest: p.digest, Etags: map[string]string{}}
	for _, it := range p.items {
		sp.Etags[it.name] = it.etag()
	}
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return fmt.Errorf("corsctl: encode plan: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("corsctl: write plan: %w", err)
	}
	return nil
}

// errStalePlan: corsd or the files changed since the plan was saved.
var errStalePlan = errors.New("corsd or the files changed since the plan was made; nothing was applied")

// checkAgainst refuses p unless it is the plan saved at path: same files,
// same prune setting, and every policy still at the etag diff saw.
func (p *plan) checkAgainst(path string) error {
	b, err := os.ReadFile(path) //nolint:gosec // G304: reading the plan the user named is the point
	if err != nil {
		return fmt.Errorf("corsctl: read plan: %w", err)
	}
	if len(b) > maxInputSize {
		return fmt.Errorf("corsctl: plan %s is larger than %d bytes", path, maxInputSize)
	}
	var sp savedPlan
	if err := json.Unmarshal(b, &sp); err != nil || sp.Format != planFormat {
		return fmt.Errorf("corsctl: %s is not a plan written by corsctl diff --plan-out", path)
	}
	if sp.Prune != p.prune {
		return fmt.Errorf("corsctl: the plan was made with --prune=%v; apply with the same setting", sp.Prune)
	}
	if sp.Digest != p.digest {
		return fmt.Errorf("corsctl: %w: the policy files differ from those diff compared; run corsctl diff again", errStalePlan)
	}
	var stale []string
	for _, it := range p.items {
		saw, ok := sp.Etags[it.name]
		switch {
		case !ok && it.cur != nil:
			stale = append(stale, it.name+" was created on corsd since the diff")
		case !ok:
		case saw != it.etag():
			switch {
			case saw == "":
				stale = append(stale, it.name+" was created on corsd since the diff")
			case it.cur == nil:
				stale = append(stale, it.name+" was deleted on corsd since the diff")
			default:
				stale = append(stale, fmt.Sprintf("%s changed on corsd since the diff (etag %s, now %s)", it.name, saw, it.etag()))
			}
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("corsctl: %w:\n  %s\nRun corsctl diff again to see the current state", errStalePlan, strings.Join(stale, "\n  "))
	}
	return nil
}

func (a *app) diffCmd() *cobra.Command {
	var (
		file, planOut string
		prune         bool
	)
	cmd := &cobra.Command{
		Use:   "diff -f DIR|FILE",
		Short: "Show what apply would change on corsd to match the policy files; exit 1 on a difference",
		Long: `diff compares the policies in FILE, or in the *.yaml, *.yml and *.json files of DIR, with
what corsd holds, and prints per policy what apply would do: each origin added (+),
removed (-) or changed (~) with its credential flags, and each other field changed.
It writes nothing and needs only the read scope.

Exit status: 0 when corsd matches the files, 1 when they differ (or on an error), 2 on
a usage error; a CI job can run it on every change of a policy repository.

--plan-out FILE saves the etags diff saw; apply --plan FILE then applies only if no
policy changed on corsd since, so what was reviewed is what is written.`,
		Example: `  corsctl export -d policies/      # once: start a policy repository
  corsctl diff -f policies/         # after an edit: what would change
  corsctl diff -f policies/ --plan-out plan.json && corsctl apply -f policies/ --plan plan.json`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "diff needs -f DIR|FILE")
			}
			src, err := readPolicySource(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			pl, err := makePlan(ctx, c, src, prune)
			if err != nil {
				return err
			}
			if planOut != "" {
				if err := pl.save(planOut); err != nil {
					return err
				}
			}
			if err := a.printDiff(pl); err != nil {
				return err
			}
			if pl.changes() > 0 {
				return &exitCodeError{code: exitError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "policy file or directory of policy files (- for stdin)")
	f.BoolVar(&prune, "prune", false, "also show the policies apply --prune would delete (on corsd, not in the files)")
	f.StringVar(&planOut, "plan-out", "", "save the etags compared into this file, for apply --plan")
	return cmd
}

// diffEntry is one changed policy in diff's json and yaml output.
type diffEntry struct {
	Name    string   `json:"name"`
	Action  string   `json:"action"` // create, update, delete
	File    string   `json:"file,omitempty"`
	Changes []string `json:"changes"` // as in the table: "+ origin https://a.example (credentials)"
}

func (a *app) printDiff(pl *plan) error {
	if a.output != "table" {
		entries := []diffEntry{}
		for _, it := range pl.items {
			if it.action == actionUnchanged {
				continue
			}
			var lines strings.Builder
			describeItem(&lines, it, "")
			e := diffEntry{Name: it.name, Action: [...]string{"", "create", "update", "delete"}[it.action], File: it.file, Changes: []string{}}
			for line := range strings.Lines(lines.String()) {
				e.Changes = append(e.Changes, strings.TrimSuffix(line, "\n"))
			}
			entries = append(entries, e)
		}
		if err := a.printValue(entries); err != nil {
			return err
		}
		a.noteExtra(pl)
		return nil
	}
	var b strings.Builder
	unchanged := 0
	counts := map[planAction]int{}
	for _, it := range pl.items {
		counts[it.action]++
		switch it.action {
		case actionUnchanged:
			unchanged++
			continue
		case actionCreate:
			fmt.Fprintf(&b, "+ %s (create, from %s)\n", it.name, it.file)
		case actionUpdate:
			fmt.Fprintf(&b, "~ %s (update, from %s)\n", it.name, it.file)
		case actionDelete:
			fmt.Fprintf(&b, "- %s (delete: not in the files, --prune)\n", it.name)
		}
		describeItem(&b, it, "    ")
	}
	if pl.changes() == 0 {
		fmt.Fprintf(&b, "No differences: corsd matches the files (%d policies).\n", unchanged)
	} else {
		fmt.Fprintf(&b, "%d to create, %d to update, %d to delete, %d unchanged.\n",
			counts[actionCreate], counts[actionUpdate], counts[actionDelete], unchanged)
	}
	if err := a.printf("%s", b.String()); err != nil {
		return err
	}
	a.noteExtra(pl)
	return nil
}

// noteExtra says on stderr which policies corsd holds beyond the files.
func (a *app) noteExtra(pl *plan) {
	if len(pl.extra) > 0 {
		a.hintf("Not in the files, left alone (--prune would delete them): %s\n", strings.Join(pl.extra, ", "))
	}
}

func (a *app) applyCmd() *cobra.Command {
	var (
		file, planFile string
		prune, dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f DIR|FILE [--prune] [--dry-run] [--plan PLAN]",
		Short: "Make corsd hold the policies of the files: create, update (and with --prune delete)",
		Long: applyLong + `

--plan PLAN (from diff --plan-out) applies only if every policy is still at the etag
diff saw, and the files are those diff compared; otherwise nothing is written.`,
		Example: `  corsctl apply -f policies/ --dry-run
  corsctl apply -f policies/ --prune`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "apply needs -f DIR|FILE")
			}
			return a.applySource(cmd, file, applyOptions{prune: prune, dryRun: dryRun, planFile: planFile})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "policy file or directory of policy files (- for stdin)")
	f.BoolVar(&prune, "prune", false, "delete the policies corsd holds that the files do not")
	f.BoolVar(&dryRun, "dry-run", false, "let corsd validate the policies and say what would change, storing nothing")
	f.StringVar(&planFile, "plan", "", "apply only if nothing changed since diff --plan-out wrote this file")
	return cmd
}

const applyLong = `apply makes corsd hold the policies in FILE, or in the *.yaml, *.yml and *.json files of
DIR: it creates the missing ones, updates the ones that differ, and leaves the equal ones
alone (no write, no new revision), so running it twice changes nothing. Output-only
fields in the files (revision, etag, times) are ignored. Every policy is validated
before anything is written. Each write is one transaction conditional on the etag read
before it, so a concurrent change makes apply fail (Aborted) rather than be overwritten.
The summary names every origin added or removed.

With --prune, policies on corsd that are in none of the files are deleted (each on the
etag read). With --dry-run corsd validates every policy and nothing is stored: the
output says what would be created, updated and deleted (a check for CI).`

type applyOptions struct {
	prune, dryRun bool
	planFile      string
}

func (a *app) applySource(cmd *cobra.Command, file string, opt applyOptions) error {
	src, err := readPolicySource(file, cmd.InOrStdin())
	if err != nil {
		return err
	}
	ctx, cancel, c, err := a.call(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	pl, err := makePlan(ctx, c, src, opt.prune)
	if err != nil {
		return err
	}
	if opt.planFile != "" {
		if err := pl.checkAgainst(opt.planFile); err != nil {
			return err
		}
	}
	var stored []*corsdv1.Policy
	var b strings.Builder
	for _, it := range pl.items {
		line, p, err := applyItem(ctx, c, it, opt.dryRun)
		if err != nil {
			_ = a.printf("%s", b.String()) // what was done before the failure
			return fmt.Errorf("apply %s: %w", it.name, err)
		}
		b.WriteString(line)
		describeItem(&b, it, "    ")
		if p != nil {
			stored = append(stored, p)
		}
	}
	if a.output != "table" {
		return a.printMessages(true, policiesAsMessages(stored)...)
	}
	if err := a.printf("%s", b.String()); err != nil {
		return err
	}
	a.noteExtra(pl)
	return nil
}

// applyItem performs one item of a plan and returns its summary line and
// the policy as corsd stored (or would store) it.
func applyItem(ctx context.Context, c *client.Client, it planItem, dryRun bool) (string, *corsdv1.Policy, error) {
	switch it.action {
	case actionCreate:
		resp, err := c.Policies().CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: policyID(it.name), Policy: it.want, ValidateOnly: dryRun})
		if err != nil {
			return "", nil, err
		}
		if dryRun {
			return it.name + " would be created (dry run)\n", resp.GetPolicy(), nil
		}
		return fmt.Sprintf("%s created (revision %d)\n", it.name, resp.GetPolicy().GetRevision()), resp.GetPolicy(), nil
	case actionUpdate:
		upd := clonePolicy(it.want)
		upd.Etag = it.etag()
		resp, err := c.Policies().UpdatePolicy(ctx, &corsdv1.UpdatePolicyRequest{Policy: upd, ValidateOnly: dryRun})
		if err != nil {
			return "", nil, err
		}
		if dryRun {
			return it.name + " would be updated (dry run)\n", resp.GetPolicy(), nil
		}
		return fmt.Sprintf("%s updated (revision %d)\n", it.name, resp.GetPolicy().GetRevision()), resp.GetPolicy(), nil
	case actionDelete:
		if dryRun {
			return it.name + " would be deleted (dry run)\n", nil, nil
		}
		resp, err := c.Policies().DeletePolicy(ctx, &corsdv1.DeletePolicyRequest{Name: it.name, Etag: it.etag()})
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("%s deleted (revision %d)\n", it.name, resp.GetRevision()), nil, nil
	}
	return fmt.Sprintf("%s unchanged (revision %d)\n", it.name, it.cur.GetRevision()), it.cur, nil
}
