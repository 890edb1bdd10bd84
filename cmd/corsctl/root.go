package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corsd/corsd/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const defaultAddr = "127.0.0.1:8443"

// app holds the global flags and the lazily dialed client.
type app struct {
	out, errOut io.Writer

	addr      string
	token     string
	tlsCA     string
	useTLS    bool
	plaintext bool
	output    string
	timeout   time.Duration

	client *client.Client
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), cmd: cmd}
}

// needArgs returns a validator for exactly the positional arguments named
// in names ("NAME", "POLICY ORIGIN"); its failures are usage errors.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf(cmd, "%s needs %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		case len(args) > len(names) && len(names) == 0:
			return usageErrorf(cmd, "%s takes no arguments; got %q", cmd.CommandPath(), args)
		case len(args) > len(names):
			return usageErrorf(cmd, "%s takes %s; got %d arguments: %q", cmd.CommandPath(), strings.Join(names, " "), len(args), args)
		}
		return nil
	}
}

// groupCmd returns a command that only holds subcommands: run bare it
// prints its help and succeeds (as kubectl and gh do); with an unknown
// subcommand it fails with a usage error.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		// Found commands are matched first; RunE sees only unknown ones.
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usageErrorf(cmd, "%s", msg)
		},
	}
}

// exitCodeError ends corsctl with code after the command printed its own
// output: check exits 1 when the request is refused, diff when the files
// differ. Nothing more is printed.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// newRootCmd builds the corsctl command tree writing to out and errOut.
func newRootCmd(out, errOut io.Writer) *cobra.Command {
	_, root := newApp(out, errOut)
	return root
}

func newApp(out, errOut io.Writer) (*app, *cobra.Command) {
	a := &app{out: out, errOut: errOut}
	root := groupCmd("corsctl", "Administer corsd, the CORS policy decision service")
	root.Long = `corsctl administers corsd: CORS policies, their trusted origins, decisions and the change log.

It connects to --addr (or $CORSD_ADDR; default ` + defaultAddr + `, where "make run" listens)
with the bearer token of --token (or $CORSD_TOKEN). Several replicas are a comma-separated
list (h1:8443,h2:8443) or a DNS name (dns:///corsd.internal:8443): calls go to a replica
that is up, reads are retried on another one. Loopback addresses use plaintext and
any other address TLS with the system roots, unless --tls, --tls-ca or --plaintext say
otherwise. A token is never sent over plaintext to a non-loopback address.

Exit status: 0 on success; 1 when corsd refused the request, could not be reached, or
any other failure; 2 on a usage error.`
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, cmd: cmd}
	})

	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "", "corsd gRPC address, or replicas h1:p,h2:p or dns:///name:p (default $CORSD_ADDR or "+defaultAddr+")")
	pf.StringVar(&a.token, "token", "", "bearer token (default $CORSD_TOKEN)")
	pf.StringVar(&a.tlsCA, "tls-ca", "", "use TLS and verify corsd's certificate against the PEM CAs in this file")
	pf.BoolVar(&a.useTLS, "tls", false, "use TLS with the system roots even for a loopback address")
	pf.BoolVar(&a.plaintext, "plaintext", false, "use plaintext even to a non-loopback address (never with a token)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of each call to corsd")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch a.output {
		case "table", "json", "yaml":
		default:
			return usageErrorf(cmd, "invalid --output %q: use table, json or yaml", a.output)
		}
		if a.timeout <= 0 {
			return usageErrorf(cmd, "invalid --timeout %v: it must be positive", a.timeout)
		}
		if a.plaintext && (a.useTLS || a.tlsCA != "") {
			return usageErrorf(cmd, "--plaintext conflicts with --tls and --tls-ca; choose one")
		}
		return nil
	}

	root.AddCommand(
		a.policiesCmd(),
		a.originsCmd(),
		a.checkCmd(),
		a.changesCmd(),
		a.exportCmd(),
		a.diffCmd(),
		a.applyCmd(),
		a.importCmd(),
		a.backupCmd(),
		a.versionCmd(),
	)
	root.PersistentPostRun = func(*cobra.Command, []string) { a.closeClient() }
	return a, root
}

// run executes corsctl with args and returns the exit code. Errors are
// printed to errOut with what to do about them.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	a, root := newApp(out, errOut) //nolint:contextcheck // the commands get ctx from ExecuteContextC, as cmd.Context()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	a.closeClient()
	if err == nil {
		return exitOK
	}
	if ee, ok := errors.AsType[*exitCodeError](err); ok {
		return ee.code
	}
	_, _ = fmt.Fprintln(errOut, a.describe(err))
	if ue, ok := errors.AsType[*usageError](err); ok {
		c := ue.cmd
		if c == nil {
			c = cmd
		}
		_, _ = fmt.Fprintf(errOut, "Run '%s --help' for usage.\n", c.CommandPath())
		return exitUsage
	}
	return exitError
}

func (a *app) address() string {
	if a.addr != "" {
		return a.addr
	}
	if env := os.Getenv("CORSD_ADDR"); env != "" {
		return env
	}
	return defaultAddr
}

// dial returns the client, connecting on first use.
func (a *app) dial() (*client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	token := a.token
	if token == "" {
		token = os.Getenv("CORSD_TOKEN")
	}
	addr := a.address()
	var opts []client.DialOption
	if token != "" {
		opts = append(opts, client.WithToken(strings.TrimSpace(token)))
	}
	switch {
	case a.tlsCA != "":
		opts = append(opts, client.WithCAFile(a.tlsCA))
	case a.useTLS:
		opts = append(opts, client.WithTLSConfig(nil))
	case a.plaintext && client.IsLoopback(addr):
		opts = append(opts, client.WithInsecure())
	case a.plaintext:
		opts = append(opts, client.DangerouslyAllowPlaintext())
	}
	c, err := client.Dial(addr, opts...)
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// call returns a context bounded by --timeout and the client.
func (a *app) call(cmd *cobra.Command) (context.Context, context.CancelFunc, *client.Client, error) {
	c, err := a.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	return ctx, cancel, c, nil
}

// closeClient closes the connection after a command.
func (a *app) closeClient() {
	if a.client != nil {
		_ = a.client.Close()
		a.client = nil
	}
}

// printf writes to standard output.
func (a *app) printf(format string, args ...any) error {
	_, err := fmt.Fprintf(a.out, format, args...)
	return err
}

// hintf writes a hint to standard error; a failure to write it is moot.
func (a *app) hintf(format string, args ...any) {
	_, _ = fmt.Fprintf(a.errOut, format, args...)
}

// flagSet returns whether the named flag was given.
func flagSet(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
