//go:build js

package main

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"tailscale.com/wgengine/netstack"
)

// timeWait is how long a closed connection's endpoint lingers in TIME-WAIT on this node: none.
//
// Why: inbound connections reach us through netstack's TCP forwarder, never a listening endpoint.
// When a SYN arrives for a 4-tuple still in TIME-WAIT here (we closed first, as an HTTP server does
// after a `Connection: close` answer or an idle keep-alive), gVisor hands a new SYN only to a
// listening endpoint (tcp/connect.go handleTimeWaitSegments) and, finding none, drops it, and every
// retransmitted SYN with it, for the whole TIME-WAIT (60 s by default). A peer's stack (ours too)
// picks a random ephemeral port per dial, so a busy client meets one of our TIME-WAIT ports now and
// then and its dial hangs until it times out. Linux instead reopens the connection on such a SYN;
// with no TIME-WAIT we do the same. What TIME-WAIT would add: re-ACKing a FIN retransmitted after our
// last ACK was lost (the peer gets a RST instead, after it has read everything) and absorbing old
// duplicates (a new connection on the same 4-tuple starts at a far later clock-based ISN).
const timeWait = tcpip.TCPTimeWaitTimeoutOption(0)

// tuneTCP sets the TCP options of the node's netstack that differ from gVisor's defaults.
func tuneTCP(ns *netstack.Impl) error {
	tw := timeWait
	if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
		return errorf("ENGINE", "netstack: TIME-WAIT timeout: %v", err)
	}
	return nil
}
