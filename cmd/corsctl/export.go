package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/internal/backupfmt"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func (a *app) exportCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "export [-d DIR]",
		Short: "Write every policy as a person writes it (no etag, revision or times), for git",
		Long: `export prints every policy as a YAML list (-o json for JSON), or with -d DIR writes one
file per policy, DIR/{id}.yaml. Only what a person writes is exported: no etag, revision
or timestamps, fields in the API's order, default values left out, policies sorted by
name. Exporting twice gives the same bytes, so a policy repository diffs cleanly.

Use it to start a policy repository; then edit the files and run diff and apply.`,
		Example: `  corsctl export -d policies/
  corsctl export > all.yaml`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := a.listSorted(cmd)
			if err != nil {
				return err
			}
			if dir != "" {
				paths, err := writeExportDir(dir, ps)
				if err != nil {
					return err
				}
				a.hintf("wrote %d policy files into %s\n", len(paths), dir)
				return nil
			}
			data, err := exportData(ps, a.output == "json")
			if err != nil {
				return err
			}
			_, err = a.out.Write(data)
			return err
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "d", "", "write one file per policy into this directory, DIR/{id}.yaml")
	return cmd
}

// listSorted returns every policy, sorted by name.
func (a *app) listSorted(cmd *cobra.Command) ([]*corsdv1.Policy, error) {
	ctx, cancel, c, err := a.call(cmd)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ps, err := c.ListAllPolicies(ctx)
	if err != nil {
		return nil, err
	}
	return sortedByName(ps), nil
}

// exportData renders the authored fields of ps as a YAML (or JSON) list.
func exportData(ps []*corsdv1.Policy, asJSON bool) ([]byte, error) {
	if asJSON {
		msgs := make([]protoMessage, len(ps))
		for i, p := range ps {
			msgs[i] = authored(p)
		}
		return marshalMessages(true, msgs...)
	}
	if len(ps) == 0 {
		return []byte("[]\n"), nil
	}
	return policyYAML(true, ps...)
}

func (a *app) importCmd() *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import -f FILE",
		Short: "Apply every policy of FILE (an export): create the missing, update the different",
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "import needs -f FILE")
			}
			return a.applySource(cmd, file, applyOptions{dryRun: dryRun})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file or directory written by export (- for stdin)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "let corsd validate the policies and say what would change, storing nothing")
	return cmd
}

func (a *app) backupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Back corsd's store up to FILE while it serves; restore with corsd --restore-from FILE",
		Long: `backup streams one consistent state of corsd's store (policies, revisions and the
retained change log) into FILE, readable by you only, while corsd goes on serving. The
format is the same for every store backend: a backup of a bbolt store restores into
etcd and back. The backup is checked before FILE is written: a failed backup never
leaves a partial file.

Restore by starting corsd from it into an empty store:
  corsd --restore-from FILE --store bolt:NEW.db   (or --store etcd://HOST:2379/PREFIX)
For a portable, human-readable copy of the policies only, use export / import.

The backup needs a token with the read scope. It is not bounded by --timeout.`,
		Args: needArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			n, err := backupTo(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			a.hintf("wrote %s (%d bytes), a verified backup; restore with: corsd --restore-from %s --store bolt:NEW.db\n", args[0], n, args[0])
			return nil
		},
	}
}

// backupTo streams the database into a temporary file next to path,
// syncs and verifies it, then renames it over path (mode 0600).
func backupTo(ctx context.Context, c *client.Client, path string) (n int64, err error) {
	stream, err := c.Policies().BackupDatabase(ctx, &corsdv1.BackupDatabaseRequest{})
	if err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("corsctl: write backup: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	for {
		msg, rerr := stream.Recv()
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return 0, rerr
		}
		m, werr := tmp.Write(msg.GetData())
		n += int64(m)
		if werr != nil {
			return 0, fmt.Errorf("corsctl: write backup: %w", werr)
		}
	}
	if err = tmp.Sync(); err != nil {
		return 0, fmt.Errorf("corsctl: write backup: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return 0, fmt.Errorf("corsctl: write backup: %w", err)
	}
	if err = verifyBackup(tmp.Name()); err != nil {
		return 0, fmt.Errorf("corsctl: the backup received from corsd does not check out, nothing written: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("corsctl: write backup: %w", err)
	}
	return n, nil
}

// verifyBackup reads the backup at path through and checks its structure,
// holding one record at a time.
func verifyBackup(path string) error {
	f, err := os.Open(path) //nolint:gosec // G304: the file corsctl just wrote
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = backupfmt.Verify(f)
	return err
}
