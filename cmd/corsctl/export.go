package main

import (
	"bytes"
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
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import -f FILE",
		Short: "Apply every policy of FILE (an export): create the missing, update the different",
		Args:  needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "import needs -f FILE")
			}
			return a.applyFile(cmd, file, dryRun)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file written by export or backup (- for stdin)")
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
