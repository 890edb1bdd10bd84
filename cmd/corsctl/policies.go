package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func (a *app) policiesCmd() *cobra.Command {
	cmd := groupCmd("policies", "List, show, create, update, delete and apply policies")
	cmd.Aliases = []string{"policy"}
	cmd.AddCommand(
		a.policiesListCmd(),
		a.policiesGetCmd(),
		a.policiesCreateCmd(),
		a.policiesUpdateCmd(),
		a.policiesDeleteCmd(),
		a.policiesApplyCmd(),
	)
	return cmd
}

func (a *app) policiesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every policy",
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			ps, err := c.ListAllPolicies(ctx)
			if err != nil {
				return err
			}
			if a.output == "table" {
				if len(ps) == 0 {
					a.hintf("No policies yet; create one with: corsctl policies apply -f FILE\n")
				}
				return printPolicyTable(a.out, ps)
			}
			return a.printMessages(true, policiesAsMessages(ps)...)
		},
	}
}

func (a *app) policiesGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "get NAME",
		Short:             "Show one policy (NAME is policies/{id} or {id})",
		Args:              needArgs("NAME"),
		ValidArgsFunction: a.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := a.getPolicy(cmd, args[0])
			if err != nil {
				return err
			}
			return a.printPolicy(pol)
		},
	}
}

func (a *app) printPolicy(p *corsdv1.Policy) error {
	if a.output == "table" {
		return printPolicyDetail(a.out, p)
	}
	return a.printMessages(false, p)
}

// printResults reports what a write did: one line per policy in the table
// format, the stored policies otherwise.
func (a *app) printResults(results []applyResult) error {
	if a.output == "table" {
		var b strings.Builder
		for _, r := range results {
			if r.dryRun || r.policy.GetRevision() == 0 { // a dry run stores nothing
				fmt.Fprintf(&b, "%s %s\n", r.policy.GetName(), r.action)
				continue
			}
			fmt.Fprintf(&b, "%s %s (revision %d)\n", r.policy.GetName(), r.action, r.policy.GetRevision())
		}
		return a.printf("%s", b.String())
	}
	ps := make([]*corsdv1.Policy, len(results))
	for i, r := range results {
		ps[i] = r.policy
	}
	if len(ps) == 1 {
		return a.printMessages(false, ps[0])
	}
	return a.printMessages(true, policiesAsMessages(ps)...)
}

type applyResult struct {
	action string // created, updated, unchanged, deleted
	policy *corsdv1.Policy
	dryRun bool // nothing was stored
}

func (a *app) policiesCreateCmd() *cobra.Command {
	return a.policyFileCmd("create", "Create the policies in FILE (YAML or JSON; - for stdin)", "created",
		func(ctx context.Context, c *client.Client, p *corsdv1.Policy, validateOnly bool) (*corsdv1.Policy, error) {
			resp, err := c.Policies().CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{
				PolicyId: policyID(p.GetName()), Policy: p, ValidateOnly: validateOnly,
			})
			return resp.GetPolicy(), err
		})
}

func (a *app) policiesUpdateCmd() *cobra.Command {
	return a.policyFileCmd("update", "Replace the policies in FILE; an etag in the file makes the update conditional", "updated",
		func(ctx context.Context, c *client.Client, p *corsdv1.Policy, validateOnly bool) (*corsdv1.Policy, error) {
			resp, err := c.Policies().UpdatePolicy(ctx, &corsdv1.UpdatePolicyRequest{Policy: p, ValidateOnly: validateOnly})
			return resp.GetPolicy(), err
		})
}

// policyFileCmd is a command that reads policies from -f FILE and sends
// each through write, stopping at the first error.
func (a *app) policyFileCmd(verb, short, done string, write func(ctx context.Context, c *client.Client, p *corsdv1.Policy, validateOnly bool) (*corsdv1.Policy, error)) *cobra.Command {
	var file string
	var validateOnly bool
	cmd := &cobra.Command{
		Use:   verb + " -f FILE",
		Short: short,
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "%s needs -f FILE", verb)
			}
			return a.writePolicies(cmd, file, verb, func(ctx context.Context, c *client.Client, p *corsdv1.Policy) (applyResult, error) {
				stored, err := write(ctx, c, p, validateOnly)
				return applyResult{action: validatedOr(validateOnly, done), policy: stored}, err
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "policy file, YAML or JSON, one policy or a list (- for stdin)")
	cmd.Flags().BoolVar(&validateOnly, "dry-run", false, "let corsd validate the policies without storing them")
	return cmd
}

func validatedOr(validateOnly bool, action string) string {
	if validateOnly {
		return "is valid (dry run, nothing " + action + ")"
	}
	return action
}

func (a *app) policiesDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a policy (with --etag, only if it did not change since you read it)",
		Args:              needArgs("NAME"),
		ValidArgsFunction: a.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			name := policyName(args[0])
			resp, err := c.Policies().DeletePolicy(ctx, &corsdv1.DeletePolicyRequest{Name: name, Etag: etag})
			if err != nil {
				return fmt.Errorf("delete %s: %w", name, err)
			}
			if a.output == "table" {
				return a.printf("%s deleted (revision %d)\n", name, resp.GetRevision())
			}
			return a.printMessages(false, resp)
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the policy's etag still is this one")
	return cmd
}

func (a *app) policiesApplyCmd() *cobra.Command {
	var file string
	var prune, dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f DIR|FILE",
		Short: "Create the policies in the files that are missing and update those that differ (same as corsctl apply)",
		Long:  applyLong,
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "apply needs -f FILE")
			}
			return a.applySource(cmd, file, applyOptions{prune: prune, dryRun: dryRun})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "policy file or directory of policy files (- for stdin)")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete the policies corsd holds that the files do not")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "let corsd validate the policies and say what would change, storing nothing")
	return cmd
}

// writePolicies reads the policies of file and sends each through write,
// stopping at the first error, then prints what was done.
func (a *app) writePolicies(cmd *cobra.Command, file, verb string, write func(ctx context.Context, c *client.Client, p *corsdv1.Policy) (applyResult, error)) error {
	ps, err := readPolicyFile(file, cmd.InOrStdin())
	if err != nil {
		return err
	}
	ctx, cancel, c, err := a.call(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	var results []applyResult
	for _, p := range ps {
		r, err := write(ctx, c, p)
		if err != nil {
			return fmt.Errorf("%s %s: %w", verb, p.GetName(), err)
		}
		results = append(results, r)
	}
	return a.printResults(results)
}

// getPolicy fetches the policy named by arg (policies/{id} or {id}).
func (a *app) getPolicy(cmd *cobra.Command, arg string) (*corsdv1.Policy, error) {
	ctx, cancel, c, err := a.call(cmd)
	if err != nil {
		return nil, err
	}
	defer cancel()
	name := policyName(arg)
	resp, err := c.Policies().GetPolicy(ctx, &corsdv1.GetPolicyRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return resp.GetPolicy(), nil
}

// writable returns a copy of p without its output-only fields.
func writable(p *corsdv1.Policy) *corsdv1.Policy {
	p = proto.Clone(p).(*corsdv1.Policy)
	p.Revision, p.Etag, p.CreateTime, p.UpdateTime = 0, "", nil, nil
	return p
}
