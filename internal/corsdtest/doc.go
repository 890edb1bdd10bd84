// Package corsdtest is the test harness for e2e tests and the load test:
// builds and runs real corsd processes on loopback, and etcd clusters whose
// members are separate processes (EtcdCluster, of the internal/etcdnode
// program) for corsd replicas to share.
//
// The core API (ModuleRoot, Tool, Build, Start, Daemon, Logs) returns
// errors and needs no testing.TB, so that programs such as
// internal/loadtest can use it; MustModuleRoot, MustTool, MustBuild and
// MustStart are thin wrappers for tests that fail the test instead and
// clean up after it.
//
// Every corsd started here listens on 127.0.0.1 ports chosen by the kernel,
// logs JSON to a Logs, and is configured by its flags only: no CORSD_*
// variable of the caller's environment reaches it.
package corsdtest
