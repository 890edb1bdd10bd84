package corsdtest

import (
	"context"
	"path/filepath"
	"testing"
)

// MustModuleRoot is ModuleRoot for tests: it fails tb on error.
func MustModuleRoot(tb testing.TB) string {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// MustTool is Tool for tests: it fails tb when name is missing.
func MustTool(tb testing.TB, root, name string) string {
	tb.Helper()
	p, err := Tool(root, name)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// MustBuild builds pkg of the corsd module (./cmd/corsd, ./cmd/corsctl)
// into a directory of tb.TempDir(), within BuildTimeout, and returns the
// binary's path, named after the package's last element.
func MustBuild(tb testing.TB, pkg string) string {
	tb.Helper()
	root := MustModuleRoot(tb)
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(tb.Context(), BuildTimeout)
	defer cancel()
	if err := Build(ctx, root, pkg, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// MustStart is Start for tests: it fails tb when corsd does not become
// ready, and stops corsd at cleanup (Stop with StopTimeout) unless the test
// stopped it. The cleanup reports nothing but a log line; a test that
// requires a clean exit calls Stop itself and checks its error.
func MustStart(tb testing.TB, bin string, args ...string) *Daemon {
	tb.Helper()
	d, err := Start(tb.Context(), bin, args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(StopTimeout); err != nil {
			tb.Logf("corsd %s: %v", d.GRPCAddr, err)
		}
	})
	return d
}

// MustStartEtcdCluster builds the etcdnode program and starts an n-member
// etcd cluster of separate processes on loopback, with its data in a
// directory of tb.TempDir(). At cleanup the running members are stopped.
func MustStartEtcdCluster(tb testing.TB, n int) *EtcdCluster {
	tb.Helper()
	bin := MustBuild(tb, EtcdNodePackage)
	c, err := StartEtcdCluster(tb.Context(), bin, tb.TempDir(), n)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(StopTimeout); err != nil {
			tb.Logf("etcd cluster: %v", err)
		}
	})
	return c
}
