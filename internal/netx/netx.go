// Package netx holds the small net.Conn and net.Listener adapters that
// the connection servers share: a connection whose first bytes were read
// ahead, and a listener fed with connections accepted elsewhere. It knows
// no HTTP.
package netx
