//go:build js

// Command tailnet-wasm runs one Tailscale node inside a JavaScript host (Node.js), compiled with
// GOOS=js GOARCH=wasm. It is krkn's equivalent of tsconnect, extended with inbound listeners.
//
// The host creates an object at globalThis[$KRKN_BRIDGE] with a "host" member (the callbacks
// listed in host.go) before running the module. main installs the node's API on that object as
// "go" and calls host.ready(). Every call that can wait returns a Promise; nothing blocks the
// JavaScript thread.
package main

import (
	"fmt"
	"log"
	"os"
	"syscall/js"
)

func main() {
	key := os.Getenv("KRKN_BRIDGE")
	bridge := js.Global().Get(key)
	if key == "" || bridge.Type() != js.TypeObject {
		fmt.Fprintf(os.Stderr, "tailnet-wasm: globalThis[%q] is not a bridge object (set KRKN_BRIDGE)\n", key)
		os.Exit(2)
	}
	h := &host{v: bridge.Get("host")}
	log.SetFlags(0)
	log.SetOutput(h.logWriter())

	n := newNode(h)
	bridge.Set("go", js.ValueOf(n.exports()))
	h.call("ready")
	<-n.exited
}
