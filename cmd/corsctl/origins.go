package main

import (
	"fmt"

	"github.com/spf13/cobra"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func (a *app) originsCmd() *cobra.Command {
	cmd := groupCmd("origins", "List, add and remove the trusted origins of a policy")
	cmd.Aliases = []string{"origin"}
	cmd.AddCommand(a.originsListCmd(), a.originsAddCmd(), a.originsRemoveCmd())
	return cmd
}

func (a *app) originsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "list POLICY",
		Short:             "List the trusted origins of POLICY",
		Args:              needArgs("POLICY"),
		ValidArgsFunction: a.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := a.getPolicy(cmd, args[0])
			if err != nil {
				return err
			}
			rules := pol.GetOrigins()
			if a.output == "table" {
				return printOriginTable(a.out, rules)
			}
			msgs := make([]protoMessage, len(rules))
			for i, r := range rules {
				msgs[i] = r
			}
			return a.printMessages(true, msgs...)
		},
	}
}

func (a *app) originsAddCmd() *cobra.Command {
	var (
		rule corsdv1.OriginRule
		etag string
	)
	cmd := &cobra.Command{
		Use:   "add POLICY ORIGIN",
		Short: "Trust ORIGIN in POLICY (an origin already trusted is refused)",
		Example: `  corsctl origins add acme https://app.example.com --credentials --description "the SPA"
  corsctl origins add acme 'https://*.preview.example.com'
  corsctl origins add acme 'http://localhost:*'`,
		Args:              needArgs("POLICY", "ORIGIN"),
		ValidArgsFunction: a.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			r := &corsdv1.OriginRule{
				Pattern:          args[1],
				AllowCredentials: rule.AllowCredentials,
				Description:      rule.Description,
				DangerouslyAllowCredentialsUnderPublicSuffix: rule.DangerouslyAllowCredentialsUnderPublicSuffix,
				DangerouslyAllowInsecureCredentials:          rule.DangerouslyAllowInsecureCredentials,
			}
			resp, err := c.Policies().AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: policyName(args[0]), Origin: r, Etag: etag})
			if err != nil {
				return fmt.Errorf("add %s to %s: %w", args[1], policyName(args[0]), err)
			}
			if a.output == "table" {
				return a.printf("%s now trusts %s (revision %d)\n", resp.GetPolicy().GetName(), args[1], resp.GetPolicy().GetRevision())
			}
			return a.printMessages(false, resp.GetPolicy())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&rule.AllowCredentials, "credentials", false, "let the origin send credentials (cookies, HTTP auth) and read the response")
	f.StringVar(&rule.Description, "description", "", "free text shown to operators")
	f.BoolVar(&rule.DangerouslyAllowCredentialsUnderPublicSuffix, "dangerously-allow-credentials-under-public-suffix", false,
		"allow --credentials for a wildcard directly under a public suffix (https://*.github.io), where anyone can register a subdomain")
	f.BoolVar(&rule.DangerouslyAllowInsecureCredentials, "dangerously-allow-insecure-credentials", false,
		"allow --credentials for a plain http origin that is not loopback or localhost")
	f.StringVar(&etag, "etag", "", "write only if the policy's etag still is this one")
	return cmd
}

func (a *app) originsRemoveCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:               "remove POLICY ORIGIN",
		Short:             "Stop trusting ORIGIN in POLICY",
		Args:              needArgs("POLICY", "ORIGIN"),
		ValidArgsFunction: a.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := c.Policies().RemoveOrigin(ctx, &corsdv1.RemoveOriginRequest{Policy: policyName(args[0]), Pattern: args[1], Etag: etag})
			if err != nil {
				return fmt.Errorf("remove %s from %s: %w", args[1], policyName(args[0]), err)
			}
			if a.output == "table" {
				return a.printf("%s no longer trusts %s (revision %d)\n", resp.GetPolicy().GetName(), args[1], resp.GetPolicy().GetRevision())
			}
			return a.printMessages(false, resp.GetPolicy())
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "write only if the policy's etag still is this one")
	return cmd
}
