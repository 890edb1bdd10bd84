package main

import (
	"github.com/spf13/cobra"

	"github.com/corsd/corsd/internal/version"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and VCS revision corsctl was built from",
		Args:  needArgs(),
		RunE: func(*cobra.Command, []string) error {
			info := version.Get()
			if a.output == "table" {
				return a.printf("corsctl %s\n", info)
			}
			return a.printValue(info)
		},
	}
}
