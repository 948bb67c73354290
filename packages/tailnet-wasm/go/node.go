//go:build js

package main

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall/js"
	"time"

	"tailscale.com/control/controlclient"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnauth"
	"tailscale.com/ipn/ipnlocal"
	"tailscale.com/net/netns"
	"tailscale.com/net/tsdial"
	"tailscale.com/tsd"
	"tailscale.com/types/logid"
	"tailscale.com/wgengine"
	"tailscale.com/wgengine/netstack"
)

// config is what the host passes to start, as JSON.
type config struct {
	Hostname   string   `json:"hostname"`
	ControlURL string   `json:"controlUrl"`
	AuthKey    string   `json:"authKey"`
	Ephemeral  bool     `json:"ephemeral"`
	Tags       []string `json:"tags"`
	ForceLogin bool     `json:"forceLogin"`
}

// startResult tells the host what start did with the auth key.
type startResult struct {
	State       string `json:"state"`
	AuthKeyUsed bool   `json:"authKeyUsed"`
}

// node is one Tailscale node: the LocalBackend, its userspace netstack and the connections the
// host holds open through it.
type node struct {
	h      *host
	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{}

	startOnce sync.Once
	lb        *ipnlocal.LocalBackend
	ns        *netstack.Impl
	dialer    *tsdial.Dialer
	conns     *connTable
	sessions  *sessionWatch

	mu    sync.Mutex
	ports map[uint16]bool // ports the host listens on
}

func newNode(h *host) *node {
	ctx, cancel := context.WithCancel(context.Background())
	return &node{
		h:      h,
		ctx:    ctx,
		cancel: cancel,
		exited: make(chan struct{}),
		conns:  newConnTable(h),
		ports:  map[uint16]bool{},
	}
}

// exports is the API installed at bridge.go. Argument checking is the host's job (it is our own
// TypeScript); the Go side still never panics on a bad id or address.
func (n *node) exports() map[string]any {
	fn := func(f func(args []js.Value) any) js.Func {
		return js.FuncOf(func(this js.Value, args []js.Value) any { return f(args) })
	}
	return map[string]any{
		"start": fn(func(a []js.Value) any {
			cfgJSON := a[0].String()
			return promise(func() (any, error) { return n.start(cfgJSON) })
		}),
		"listen":     fn(func(a []js.Value) any { n.setListening(uint16(a[0].Int()), true); return nil }),
		"unlisten":   fn(func(a []js.Value) any { n.setListening(uint16(a[0].Int()), false); return nil }),
		"dial":       fn(func(a []js.Value) any { return n.dial(a[0].String(), a[1].Int(), a[2].Int()) }),
		"write":      fn(func(a []js.Value) any { return n.conns.write(a[0].Int(), bytesFromJS(a[1])) }),
		"resume":     fn(func(a []js.Value) any { n.conns.resume(a[0].Int()); return nil }),
		"closeWrite": fn(func(a []js.Value) any { n.conns.closeWrite(a[0].Int()); return nil }),
		"close":      fn(func(a []js.Value) any { n.conns.close(a[0].Int()); return nil }),
		"whois":      fn(func(a []js.Value) any { return n.whois(a[0].String()) }),
		"ping":       fn(func(a []js.Value) any { return n.ping(a[0].String(), a[1].Int()) }),
		"status":     fn(func(a []js.Value) any { return promise(n.status) }),
		"relays":     fn(func(a []js.Value) any { return promise(n.relays) }),
		"logout":     fn(func(a []js.Value) any { return promise(n.logout) }),
		"shutdown":   fn(func(a []js.Value) any { return promise(n.shutdown) }),
		"metrics":    fn(func(a []js.Value) any { return promise(n.metrics) }),
	}
}

func (n *node) start(cfgJSON string) (any, error) {
	var cfg config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return nil, errorf("BAD_CONFIG", "start: bad config: %v", err)
	}
	var err error
	started := false
	n.startOnce.Do(func() {
		started = true
		err = n.build(cfg)
	})
	if !started {
		return nil, errorf("ALREADY_STARTED", "start: node already started")
	}
	if err != nil {
		return nil, err
	}
	return n.run(cfg)
}

// build assembles the node the way tsnet does, minus everything that needs an OS: no TUN (the
// netstack handles every packet), no log upload, no sockets of its own.
func (n *node) build(cfg config) error {
	netns.SetEnabled(false)
	hostHTTP := &hostTransport{h: n.h}
	http.DefaultTransport = hostHTTP
	http.DefaultClient.Transport = hostHTTP

	logf := log.Printf
	sys := tsd.NewSystem()
	sys.Set(&hostStore{h: n.h})

	n.dialer = &tsdial.Dialer{Logf: logf}
	n.dialer.SetBus(sys.Bus.Get())
	eng, err := wgengine.NewUserspaceEngine(logf, wgengine.Config{
		Dialer:        n.dialer,
		SetSubsystem:  sys.Set,
		ControlKnobs:  sys.ControlKnobs(),
		HealthTracker: sys.HealthTracker.Get(),
		ExtraRootCAs:  sys.ExtraRootCAs,
		Metrics:       sys.UserMetricsRegistry(),
		EventBus:      sys.Bus.Get(),
	})
	if err != nil {
		return errorf("ENGINE", "userspace engine: %v", err)
	}
	sys.Set(eng)
	n.sessions = newSessionWatch(eng)

	ns, err := netstack.Create(logf, sys.Tun.Get(), eng, sys.MagicSock.Get(), n.dialer, sys.DNSManager.Get(), sys.ProxyMapper())
	if err != nil {
		return errorf("ENGINE", "netstack: %v", err)
	}
	sys.Set(ns)
	if err := tuneTCP(ns); err != nil {
		return err
	}
	ns.ProcessLocalIPs = true
	ns.ProcessSubnets = false
	// Only ports the host listens on are accepted; everything else is reset. Without this hook
	// netstack would forward unknown ports to the host's loopback.
	ns.GetTCPHandlerForFlow = n.tcpHandlerForFlow
	n.ns = ns
	n.dialer.UseNetstackForIP = func(ip netip.Addr) bool {
		_, ok := n.lb.PeerForIP(ip)
		return ok
	}
	n.dialer.NetstackDialTCP = n.netstackDialTCP
	n.dialer.NetstackDialUDP = func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
		c, err := ns.DialContextUDPWithBind(ctx, n.selfAddr(dst.Addr().Is6()), dst)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	sys.NetstackRouter.Set(true)
	sys.Tun.Get().Start()

	priv, err := logid.NewPrivateID()
	if err != nil {
		return errorf("ENGINE", "log id: %v", err)
	}
	flags := controlclient.LoginDefault
	if cfg.Ephemeral {
		flags = controlclient.LoginEphemeral
	}
	lb, err := ipnlocal.NewLocalBackend(logf, priv.Public(), sys, flags|controlclient.LocalBackendStartKeyOSNeutral)
	if err != nil {
		return errorf("ENGINE", "local backend: %v", err)
	}
	n.lb = lb
	if err := ns.Start(lb); err != nil {
		return errorf("ENGINE", "netstack start: %v", err)
	}
	n.watch()
	return nil
}

// run starts the state machine and, when no identity is persisted (or a fresh login is forced),
// the login: with the auth key if there is one, otherwise interactively (a loginUrl event).
func (n *node) run(cfg config) (any, error) {
	prefs := ipn.NewPrefs()
	prefs.Hostname = cfg.Hostname
	prefs.WantRunning = true
	prefs.ControlURL = cfg.ControlURL
	prefs.AdvertiseTags = cfg.Tags
	prefs.RouteAll = false
	if cfg.ForceLogin {
		// A forced login may register another node: the old one's cached netmap must not make
		// this start say Running with its identity.
		if err := n.lb.ClearNetmapCache(n.ctx); err != nil {
			return nil, errorf("ENGINE", "clear netmap cache: %v", err)
		}
	}
	if err := n.lb.Start(ipn.Options{UpdatePrefs: prefs, AuthKey: cfg.AuthKey}); err != nil {
		return nil, errorf("ENGINE", "start backend: %v", err)
	}
	st := n.lb.State()
	res := startResult{State: st.String()}
	if st == ipn.NeedsLogin || cfg.ForceLogin {
		res.AuthKeyUsed = cfg.AuthKey != ""
		if err := n.lb.StartLoginInteractive(n.ctx); err != nil {
			return nil, errorf("ENGINE", "start login: %v", err)
		}
	}
	return jsonValue(res)
}

func (n *node) setListening(port uint16, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.ports[port] = true
	} else {
		delete(n.ports, port)
	}
}

func (n *node) tcpHandlerForFlow(src, dst netip.AddrPort) (func(net.Conn), bool) {
	n.mu.Lock()
	listening := n.ports[dst.Port()]
	n.mu.Unlock()
	if !listening || !n.isSelf(dst.Addr()) {
		return nil, true // intercept with no handler: reset, never forward to the host
	}
	return func(c net.Conn) { n.conns.accept(dst.Port(), c) }, true
}

func (n *node) isSelf(ip netip.Addr) bool {
	nm := n.lb.NetMap()
	if nm == nil {
		return false
	}
	for _, p := range nm.GetAddresses().All() {
		if p.Addr() == ip {
			return true
		}
	}
	return false
}

func (n *node) netstackDialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	src := n.selfAddr(dst.Addr().Is6())
	if peer, ok := n.lb.PeerForIP(dst.Addr()); ok && !peer.IsSelf {
		stop := n.sessions.watchDial(peer.Node.Key(), dst.Addr())
		defer stop()
	}
	c, err := n.ns.DialContextTCPWithBind(ctx, src, dst)
	if err != nil {
		return nil, err // never a typed nil *gonet.TCPConn inside a non-nil interface
	}
	return c, nil
}

func (n *node) selfAddr(v6 bool) netip.Addr {
	if nm := n.lb.NetMap(); nm != nil {
		for _, p := range nm.GetAddresses().All() {
			if p.Addr().Is6() == v6 {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// dial connects to host:port over the tailnet; host is a tailnet IP or a MagicDNS name.
func (n *node) dial(hostname string, port, timeoutMs int) js.Value {
	return promise(func() (any, error) {
		ctx, cancel := context.WithTimeout(n.ctx, time.Duration(timeoutMs)*time.Millisecond)
		defer cancel()
		addr := net.JoinHostPort(hostname, itoa(port))
		n.waitPeersKnown(ctx)
		ipp, viaTailnet, err := n.dialer.UserDialPlan(ctx, "tcp", addr)
		if err != nil {
			return nil, errorf("DIAL_RESOLVE", "cannot resolve %s on the tailnet: %v%s",
				hostname, err, n.peersUnknownHint())
		}
		if !viaTailnet {
			return nil, errorf("DIAL_NOT_TAILNET", "%s (%s) is not a peer on this tailnet%s",
				hostname, ipp.Addr(), n.peersUnknownHint())
		}
		c, err := n.netstackDialTCP(ctx, ipp)
		if err != nil {
			if ctx.Err() != nil {
				return nil, errorf("DIAL_TIMEOUT", "dial %s: no answer within %dms", addr, timeoutMs)
			}
			return nil, errorf("DIAL_FAILED", "dial %s: %v", addr, err)
		}
		return n.conns.add(c).info(), nil
	})
}

// logout logs the node out of the control server; an ephemeral node is deleted at once.
func (n *node) logout() (any, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 15*time.Second)
	defer cancel()
	// Before Logout: it deletes the profile, and with it the only way to find that profile's cache.
	if err := n.lb.ClearNetmapCache(ctx); err != nil {
		return nil, errorf("LOGOUT_FAILED", "logout: clear netmap cache: %v", err)
	}
	if err := n.lb.Logout(ctx, ipnauth.Self); err != nil {
		return nil, errorf("LOGOUT_FAILED", "logout: %v", err)
	}
	return nil, nil
}

// shutdown closes every connection and the backend, then lets main return.
func (n *node) shutdown() (any, error) {
	n.conns.closeAll()
	if n.lb != nil {
		n.lb.Shutdown()
	}
	n.cancel()
	go func() {
		// Let the promise settle before the Go program exits.
		time.Sleep(10 * time.Millisecond)
		close(n.exited)
	}()
	return nil, nil
}
