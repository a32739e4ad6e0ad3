package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
)

// listen opens the proxy's listener: TCP on host:port, or a Unix socket
// for unix:/path, whose file gets cfg.ListenMode. A socket file left by a
// process that is gone is removed first; a file that is not a socket, or
// a socket something still listens on, is left alone and is an error.
// Closing the listener removes the socket file.
func listen(cfg config.Parsed) (net.Listener, error) {
	path, ok := config.UnixListen(cfg.Listen)
	if !ok {
		// No TCP keep-alive probes on client connections: every wait on
		// a client is bounded by a client timeout (idle, header, body),
		// which ends a dead peer's connection first, and the probes'
		// setup costs four system calls per accepted connection.
		lc := net.ListenConfig{KeepAlive: -1}
		return lc.Listen(context.Background(), "tcp", cfg.Listen)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode; until this chmod, at
	// most the umask lets anyone in (0755 under the usual 022: connecting
	// needs write permission, so only the owner).
	if err := os.Chmod(path, cfg.ListenMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen-mode %s on %s: %v", cfg.ListenMode, path, err)
	}
	return unixListener{ln.(*net.UnixListener)}, nil
}

// removeStaleSocket removes the socket file at path when no process
// listens on it any more.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: remove it or pick another unix: path", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another process listens on this socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %v", err)
	}
	return nil
}

// listenAddr names ln's address as -listen does: host:port or unix:/path.
func listenAddr(ln net.Listener) string {
	if a := ln.Addr(); a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return ln.Addr().String()
}

// protocols are the HTTP versions the proxy's listener speaks: HTTP/1.1,
// and HTTP/2 with prior knowledge unless cfg turns it off.
func protocols(cfg config.Parsed) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(cfg.ClientH2C)
	return p
}

// unixListener names each client by its process credentials, which the
// access log shows where a TCP client has its address.
type unixListener struct{ *net.UnixListener }

func (l unixListener) Accept() (net.Conn, error) {
	c, err := l.UnixListener.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return &unixConn{UnixConn: c, peer: peerAddr(c)}, nil
}

// unixConn is a Unix socket client connection whose RemoteAddr names the
// peer process.
type unixConn struct {
	*net.UnixConn
	peer unixPeer
}

func (c *unixConn) RemoteAddr() net.Addr { return c.peer }

// NetConn returns the connection underneath, for the tunnel relay.
func (c *unixConn) NetConn() net.Conn { return c.UnixConn }

// unixPeer is a Unix socket peer: "unix:pid=4711,uid=33" where the
// system tells, else "unix".
type unixPeer string

func (p unixPeer) Network() string { return "unix" }
func (p unixPeer) String() string  { return string(p) }
