package corsdtest

import "syscall"

// sysProcAttr makes the kernel SIGKILL corsd when the thread that started
// it exits, so that a test binary that dies without its cleanup leaves no
// daemon behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
