package main

import (
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// protoMessage shortens proto.Message in slices.
type protoMessage = proto.Message

func (a *app) changesCmd() *cobra.Command {
	var (
		since  int64
		policy string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "changes [--since REV] [--policy P]",
		Short: "Show the change log: who changed which policy, when",
		Long: `changes lists the writes recorded in corsd's change log, oldest first: revision, time,
actor (the token's name) and kind. -o json or -o yaml include each policy before and after.`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 || limit < 0 {
				return usageErrorf(cmd, "--since and --limit must not be negative")
			}
			ctx, cancel, c, err := a.call(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			req := &corsdv1.ListChangesRequest{StartRevision: since, PageSize: 1000}
			if policy != "" {
				req.Policy = policyName(policy)
			}
			var all []*corsdv1.Change
			for {
				if limit > 0 && limit-len(all) < int(req.PageSize) {
					req.PageSize = int32(limit - len(all)) //nolint:gosec // G115: below PageSize (1000) on this branch
				}
				resp, err := c.Policies().ListChanges(ctx, req)
				if err != nil {
					return err
				}
				all = append(all, resp.GetChanges()...)
				if resp.GetNextPageToken() == "" || (limit > 0 && len(all) >= limit) {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			if a.output == "table" {
				return printChangeTable(a.out, all)
			}
			msgs := make([]protoMessage, len(all))
			for i, ch := range all {
				msgs[i] = ch
			}
			return a.printMessages(true, msgs...)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&since, "since", 0, "show changes after this revision (0: from the oldest retained)")
	f.StringVar(&policy, "policy", "", "only the changes of this policy")
	f.IntVar(&limit, "limit", 0, "show at most this many changes (0: all)")
	return cmd
}
