//go:build js

package main

import (
	"context"
	"time"
)

// A restart goes Running from the cached netmap (feature cachenetmap, overlay/), which holds the
// self node but no peers, as tailscaled's does without control's cache capability. Until control's
// first map of this run every peer is unknown, so a dial or ping made right after up() waits for it.

// peersKnown reports whether the node's peers come from control in this run: false while it runs
// from the cached netmap.
func (n *node) peersKnown() bool {
	nm := n.lb.NetMap()
	return nm != nil && !nm.Cached
}

// waitPeersKnown waits, until ctx ends, while the node runs from its cached netmap. It returns at
// once when no netmap is there at all (not up, logged out): nothing is on its way then.
func (n *node) waitPeersKnown(ctx context.Context) {
	if nm := n.lb.NetMap(); nm == nil || !nm.Cached {
		return
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if nm := n.lb.NetMap(); nm == nil || !nm.Cached {
			return
		}
	}
}

// peersUnknownHint explains a failed name or address lookup made while the peers were still unknown.
func (n *node) peersUnknownHint() string {
	if nm := n.lb.NetMap(); nm != nil && nm.Cached {
		return " (the node runs from its cached netmap: control has not sent its peers yet)"
	}
	return ""
}
