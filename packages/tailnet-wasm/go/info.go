//go:build js

package main

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"syscall/js"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
)

// event is one notification to the host. Type is one of: state, loginUrl, loginFinished, self,
// peers, health, error.
type event struct {
	Type    string          `json:"type"`
	State   string          `json:"state,omitempty"`
	URL     string          `json:"url,omitempty"`
	Message string          `json:"message,omitempty"`
	Self    *selfInfo       `json:"self,omitempty"`
	Health  []healthWarning `json:"health,omitempty"`
}

type selfInfo struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	NodeKey   string   `json:"nodeKey"`
	KeyExpiry string   `json:"keyExpiry,omitempty"`
	Tags      []string `json:"tags"`
}

type healthWarning struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Title    string `json:"title"`
	Text     string `json:"text"`
}

// watch forwards the backend's notifications to the host for as long as the node runs.
func (n *node) watch() {
	mask := ipn.NotifyInitialState | ipn.NotifyInitialHealthState | ipn.NotifyPeerChanges | ipn.NotifyNoNetMap
	ready := make(chan struct{})
	go n.lb.WatchNotifications(n.ctx, mask, func() { close(ready) }, func(nt *ipn.Notify) bool {
		n.forward(nt)
		return true
	})
	<-ready
}

func (n *node) forward(nt *ipn.Notify) {
	if nt.ErrMessage != nil {
		n.h.notify(event{Type: "error", Message: *nt.ErrMessage})
	}
	if nt.State != nil {
		n.h.notify(event{Type: "state", State: nt.State.String()})
	}
	if nt.BrowseToURL != nil && *nt.BrowseToURL != "" {
		n.h.notify(event{Type: "loginUrl", URL: *nt.BrowseToURL})
	}
	if nt.LoginFinished != nil {
		n.h.notify(event{Type: "loginFinished"})
	}
	if nt.SelfChange != nil {
		n.h.notify(event{Type: "self", Self: selfFromNode(nt.SelfChange)})
	}
	if len(nt.PeersChanged) > 0 || len(nt.PeersRemoved) > 0 || len(nt.PeerChangedPatch) > 0 {
		n.h.notify(event{Type: "peers"})
	}
	if nt.Health != nil {
		n.h.notify(event{Type: "health", Health: healthWarnings(nt)})
	}
}

func selfFromNode(sn *tailcfg.Node) *selfInfo {
	s := &selfInfo{Name: strings.TrimSuffix(sn.Name, "."), NodeKey: sn.Key.String(), Tags: sn.Tags}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	for _, p := range sn.Addresses {
		s.Addresses = append(s.Addresses, p.Addr().String())
	}
	if !sn.KeyExpiry.IsZero() {
		s.KeyExpiry = sn.KeyExpiry.UTC().Format(time.RFC3339)
	}
	return s
}

func healthWarnings(nt *ipn.Notify) []healthWarning {
	ws := []healthWarning{}
	for code, w := range nt.Health.Warnings {
		ws = append(ws, healthWarning{Code: string(code), Severity: string(w.Severity), Title: w.Title, Text: w.Text})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Code < ws[j].Code })
	return ws
}

// whoisResult names the node and user behind a tailnet address, with the capabilities that
// node was granted towards us.
type whoisResult struct {
	Node   whoisNode          `json:"node"`
	User   whoisUser          `json:"user"`
	CapMap tailcfg.PeerCapMap `json:"capMap"`
}

type whoisNode struct {
	ID        int64    `json:"id"`
	StableID  string   `json:"stableId"`
	Name      string   `json:"name"`
	Hostname  string   `json:"hostname"`
	Addresses []string `json:"addresses"`
	Tags      []string `json:"tags"`
}

type whoisUser struct {
	ID          int64  `json:"id"`
	LoginName   string `json:"loginName"`
	DisplayName string `json:"displayName"`
}

// whois accepts an IP or an IP:port.
func (n *node) whois(addr string) js.Value {
	return promise(func() (any, error) {
		ipp, err := parseAddrOrAddrPort(addr)
		if err != nil {
			return nil, errorf("BAD_ADDRESS", "whois: %q is not an IP address", addr)
		}
		nv, up, ok := n.lb.WhoIs("tcp", ipp)
		if !ok {
			return nil, errorf("WHOIS_UNKNOWN", "whois: no tailnet node has address %s", ipp.Addr())
		}
		res := whoisResult{
			Node: whoisNode{
				ID:       int64(nv.ID()),
				StableID: string(nv.StableID()),
				Name:     strings.TrimSuffix(nv.Name(), "."),
				Hostname: nv.Hostinfo().Hostname(),
				Tags:     nv.Tags().AsSlice(),
			},
			User:   whoisUser{ID: int64(up.ID), LoginName: up.LoginName, DisplayName: up.DisplayName},
			CapMap: n.lb.PeerCaps(ipp.Addr()),
		}
		if res.Node.Tags == nil {
			res.Node.Tags = []string{}
		}
		for _, p := range nv.Addresses().All() {
			res.Node.Addresses = append(res.Node.Addresses, p.Addr().String())
		}
		if res.CapMap == nil {
			res.CapMap = tailcfg.PeerCapMap{}
		}
		return jsonValue(res)
	})
}

func parseAddrOrAddrPort(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 0), nil
	}
	return netip.ParseAddrPort(s)
}

// ping sends a TSMP ping (disco pings never complete on js: there is no UDP) to a tailnet IP
// or MagicDNS name.
func (n *node) ping(target string, timeoutMs int) js.Value {
	return promise(func() (any, error) {
		ctx, cancel := context.WithTimeout(n.ctx, time.Duration(timeoutMs)*time.Millisecond)
		defer cancel()
		n.waitPeersKnown(ctx)
		ipp, viaTailnet, err := n.dialer.UserDialPlan(ctx, "tcp", net.JoinHostPort(target, "0"))
		if err != nil || !viaTailnet {
			return nil, errorf("PING_UNKNOWN", "ping: %s is not a peer on this tailnet%s", target, n.peersUnknownHint())
		}
		pr, err := n.lb.Ping(ctx, ipp.Addr(), tailcfg.PingTSMP, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil, errorf("PING_TIMEOUT", "ping %s: no reply within %dms", target, timeoutMs)
			}
			return nil, errorf("PING_FAILED", "ping %s: %v", target, err)
		}
		if pr.Err != "" {
			return nil, errorf("PING_FAILED", "ping %s: %s", target, pr.Err)
		}
		return jsonValue(pr)
	})
}

// relayRegion is one DERP region of the map the control server sent, with when a frame last came
// from it (empty: never). The host uses it to explain a node that has no working home relay.
type relayRegion struct {
	ID        int         `json:"id"`
	Code      string      `json:"code"`
	Name      string      `json:"name"`
	Nodes     []relayNode `json:"nodes"`
	LastFrame string      `json:"lastFrame,omitempty"`
}

type relayNode struct {
	Host string `json:"host"`
	Port int    `json:"port"` // 0: the scheme's default
}

// relays lists the DERP map's regions as JSON (an empty list before the first map).
func (n *node) relays() (any, error) {
	regions := []relayRegion{}
	dm := n.lb.DERPMap()
	if dm == nil {
		return jsonValue(regions)
	}
	health := n.lb.HealthTracker()
	for _, id := range dm.RegionIDs() {
		r := dm.Regions[id]
		rr := relayRegion{ID: id, Code: r.RegionCode, Name: r.RegionName, Nodes: []relayNode{}}
		for _, nd := range r.Nodes {
			rr.Nodes = append(rr.Nodes, relayNode{Host: nd.HostName, Port: nd.DERPPort})
		}
		if t := health.GetDERPRegionReceivedTime(id); !t.IsZero() {
			rr.LastFrame = t.UTC().Format(time.RFC3339Nano)
		}
		regions = append(regions, rr)
	}
	return jsonValue(regions)
}

// status returns the backend's full ipnstate.Status as JSON, and whether its peers are known yet.
func (n *node) status() (any, error) {
	return jsonValue(struct {
		*ipnstate.Status
		KrknPeersKnown bool
	}{n.lb.Status(), n.peersKnown()})
}
