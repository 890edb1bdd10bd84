//go:build !linux

package corsdtest

import "syscall"

// sysProcAttr sets nothing: parent-death signals are Linux only.
func sysProcAttr() *syscall.SysProcAttr { return nil }
