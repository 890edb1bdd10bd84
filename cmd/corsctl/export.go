package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) exportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export",
		Short: "Print every policy as a YAML list (-o json for JSON), ready for import",
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := a.exportAll(cmd)
			if err != nil {
				return err
			}
			_, err = a.out.Write(data)
			return err
		},
	}
}

// exportAll renders every policy as a list in the output format (YAML
// unless -o json).
func (a *app) exportAll(cmd *cobra.Command) ([]byte, error) {
	ctx, cancel, c, err := a.call(cmd)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ps, err := c.ListAllPolicies(ctx)
	if err != nil {
		return nil, err
	}
	format := "yaml"
	if a.output == "json" {
		format = "json"
	}
	if len(ps) == 0 && format == "yaml" {
		return []byte("[]\n"), nil
	}
	var b bytes.Buffer
	if err := writeMessages(&b, format, true, policiesAsMessages(ps)...); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (a *app) importCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "import -f FILE",
		Short: "Apply every policy of FILE (an export): create the missing, update the different",
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "import needs -f FILE")
			}
			return a.applyFile(cmd, file)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file written by export or backup (- for stdin)")
	return cmd
}

func (a *app) backupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Export every policy to FILE (YAML, mode 0600); restore with import -f FILE",
		Long: `backup writes every policy to FILE, as export does, atomically and readable by you only.

It is an export, not a copy of corsd's database: the change log and the revisions are
not kept (corsd's API has no backup call yet). Restore with: corsctl import -f FILE`,
		Args: needArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.exportAll(cmd)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(args[0], data); err != nil {
				return fmt.Errorf("corsctl: write backup: %w", err)
			}
			a.hintf("wrote %s (%d bytes); restore with: corsctl import -f %s\n", args[0], len(data), args[0])
			return nil
		},
	}
}

// writeFileAtomic replaces path with data (0600) through a synced temporary
// file and a rename, so that a crash never leaves half a backup.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
