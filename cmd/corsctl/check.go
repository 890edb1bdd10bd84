package main

import (
	"github.com/spf13/cobra"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func (a *app) checkCmd() *cobra.Command {
	var (
		policy, origin, method, host, requestHeaders, secFetchSite string
		preflight, privateNetwork                                  bool
	)
	cmd := &cobra.Command{
		Use:   "check --origin ORIGIN [--policy P] [--method M] [--preflight [--request-headers h1,h2]]",
		Short: "Ask corsd how it decides a request, and why",
		Long: `check asks corsd (CheckOrigin) to decide one request and prints the decision, its reason,
an explanation and the exact response headers an enforcement point would emit.

Exit status (as kubectl auth can-i): 0 when the request is allowed, 1 when it is
refused (or corsd could not decide), 2 on a usage error. Scripts can test it:
  corsctl check --policy acme --origin https://app.example.com && echo trusted

With --preflight, the request is the browser's preflight: OPTIONS with
Access-Control-Request-Method set to --method (and Access-Control-Request-Headers
to --request-headers). Without --policy, corsd selects the policy by --host.`,
		Example: `  corsctl check --policy acme --origin https://app.example.com
  corsctl check --policy acme --origin https://app.example.com --preflight --method PUT --request-headers content-type,x-api-key`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if !preflight && (flagSet(fs, "request-headers") || privateNetwork) {
				return usageErrorf(cmd, "--request-headers and --private-network describe a preflight: add --preflight")
			}
			req := &corsdv1.CheckOriginRequest{
				Host:         host,
				Method:       method,
				Origin:       origin,
				SecFetchSite: secFetchSite,
			}
			if policy != "" {
				req.Policy = policyName(policy)
			}
			if preflight {
				req.Method = "OPTIONS"
				req.AccessControlRequestMethod = method
				req.AccessControlRequestHeaders = requestHeaders
				if privateNetwork {
					req.AccessControlRequestPrivateNetwork = "true"
				}
			}
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			d, err := c.CheckOrigin(ctx, req)
			if err != nil {
				return err
			}
			if a.output == "table" {
				err = printDecision(a.out, d)
			} else {
				err = a.printMessages(false, d)
			}
			if err != nil {
				return err
			}
			if !d.GetAllowed() {
				return &exitCodeError{code: exitError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policy, "policy", "", "policy to apply (policies/{id} or {id}); empty: select by --host")
	f.StringVar(&origin, "origin", "", "the request's Origin header; empty: no Origin (not a CORS request)")
	f.StringVar(&method, "method", "GET", "the request method; with --preflight, the method the preflight asks for")
	f.StringVar(&host, "host", "", "the request's Host")
	f.BoolVar(&preflight, "preflight", false, "decide the preflight of the request")
	f.StringVar(&requestHeaders, "request-headers", "", "with --preflight: Access-Control-Request-Headers, such as content-type,x-api-key")
	f.BoolVar(&privateNetwork, "private-network", false, "with --preflight: ask for private network access")
	f.StringVar(&secFetchSite, "sec-fetch-site", "", "the Sec-Fetch-Site header (cross-site, same-site, same-origin, none)")
	_ = cmd.RegisterFlagCompletionFunc("policy", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return a.completePolicy(cmd, nil, toComplete)
	})
	return cmd
}
