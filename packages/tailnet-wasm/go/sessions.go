//go:build js

package main

import (
	"log"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/types/key"
	"tailscale.com/wgengine"
)

// A dial that gets no answer may be stuck on a WireGuard session the peer has already thrown away.
// Tailscale resets a peer's session when control reports that the peer restarted (its disco key
// changed). When that report reaches the far side only after our first handshake with the restarted
// process (headscale batches peer updates for 800 ms by default; a loaded control server takes
// longer), or reaches us only after the peer restarted, one side keeps sending on keys the other no
// longer has, and WireGuard notices only after 15 s (keepalive + rekey timeout). Upstream's cure, a
// TSMP disco-key advertisement, is off unless the control server enables netmap caching, which
// headscale does not. So while one of our dials waits with nothing arriving from the peer, we drop
// our side of the session: the next SYN retransmit then starts a fresh handshake.
const (
	staleSessionAfter = 1500 * time.Millisecond // a dial unanswered this long, and nothing received
	staleSessionEvery = 3 * time.Second         // at most one reset per peer this often
)

// sessionWatch resets WireGuard sessions that dials show to be dead.
type sessionWatch struct {
	eng wgengine.Engine

	mu        sync.Mutex
	lastReset map[key.NodePublic]time.Time
}

func newSessionWatch(eng wgengine.Engine) *sessionWatch {
	return &sessionWatch{eng: eng, lastReset: map[key.NodePublic]time.Time{}}
}

// watchDial watches one dial to peer (whose first address is ip) until the returned stop is called.
func (w *sessionWatch) watchDial(peer key.NodePublic, ip netip.Addr) (stop func()) {
	done := make(chan struct{})
	rx, _ := w.received(peer)
	go func() {
		t := time.NewTimer(staleSessionAfter)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			now, inDevice := w.received(peer)
			if inDevice && now == rx {
				w.reset(peer, ip)
			}
			rx = now
			t.Reset(staleSessionEvery)
		}
	}()
	return func() { close(done) }
}

// received is how many bytes WireGuard has received from peer, and whether the peer has a session
// in the device at all (none: a handshake will be made anyway, there is nothing to reset).
func (w *sessionWatch) received(peer key.NodePublic) (uint64, bool) {
	p, ok := w.eng.PeerByKey(peer)
	if !ok || !p.IsValid() {
		return 0, false
	}
	return p.RxBytes(), true
}

func (w *sessionWatch) reset(peer key.NodePublic, ip netip.Addr) {
	w.mu.Lock()
	if time.Since(w.lastReset[peer]) < staleSessionEvery {
		w.mu.Unlock()
		return
	}
	w.lastReset[peer] = time.Now()
	w.mu.Unlock()
	log.Printf("krkn: dial to %v unanswered for %v with nothing received from it: resetting the WireGuard "+
		"session (the peer may have restarted, or dropped ours after learning that we did)", ip, staleSessionAfter)
	w.eng.ResetDevicePeer(peer)
}
