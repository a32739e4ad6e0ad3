package server

import (
	"net"
	"strconv"
	"syscall"
)

// peerAddr names the process at the other end of c by SO_PEERCRED.
func peerAddr(c *net.UnixConn) unixPeer {
	raw, err := c.SyscallConn()
	if err != nil {
		return "unix"
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return "unix"
	}
	return unixPeer("unix:pid=" + strconv.Itoa(int(cred.Pid)) + ",uid=" + strconv.FormatUint(uint64(cred.Uid), 10))
}
