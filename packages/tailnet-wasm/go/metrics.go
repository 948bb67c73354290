//go:build js

package main

import (
	"encoding/json"
	"runtime"
	"sync/atomic"

	"tailscale.com/util/clientmetric"
)

// derpMetrics maps our names to magicsock's client metrics (wgengine/magicsock/magicsock.go).
// "dropped" and "errorQueue" are packets lost inside this node before they reach the DERP
// server; "queued" minus those is what was handed to the DERP connection.
var derpMetrics = map[string]string{
	"queued":      "magicsock_send_derp_queued",
	"dropped":     "magicsock_send_derp_dropped",
	"errorQueue":  "magicsock_send_derp_error_queue",
	"errorChan":   "magicsock_send_derp_error_chan",
	"errorClosed": "magicsock_send_derp_error_closed",
	"sendErrors":  "magicsock_send_derp_error",
	"sentData":    "magicsock_send_data_derp",
	"recvData":    "magicsock_recv_data_derp",
}

// tcpMetrics maps our names to netstack's counters (netstack.Impl.ExpVar): the ones that show
// TCP recovering from loss (retransmits, timeouts) rather than waiting.
var tcpMetrics = map[string]string{
	"segmentsSent":     "counter_tcp_segments_sent",
	"segmentsReceived": "counter_tcp_valid_segments_received",
	"retransmits":      "counter_tcp_retransmits",
	"timeouts":         "counter_tcp_timeouts",
	"fastRecovery":     "counter_tcp_fast_recovery",
	"sackRecovery":     "counter_tcp_sack_recovery",
	"tlpRecovery":      "counter_tcp_tlp_recovery",
	"droppedPackets":   "counter_dropped_packets",
}

// crossings counts the calls between Go and the host for connection bytes.
type crossings struct {
	dataCalls  atomic.Int64 // Go → JS: host.data
	dataBytes  atomic.Int64
	writeCalls atomic.Int64 // JS → Go: write
	writeBytes atomic.Int64
}

type metricsResult struct {
	Derp      map[string]int64 `json:"derp"`
	TCP       map[string]int64 `json:"tcp"`
	Crossings map[string]int64 `json:"crossings"`
	Memory    map[string]int64 `json:"memory"`
}

func (n *node) metrics() (any, error) {
	byName := map[string]int64{}
	for _, m := range clientmetric.Metrics() {
		byName[m.Name()] = m.Value()
	}
	res := metricsResult{Derp: pick(byName, derpMetrics), TCP: map[string]int64{}, Crossings: map[string]int64{
		"dataCalls":  n.conns.crossings.dataCalls.Load(),
		"dataBytes":  n.conns.crossings.dataBytes.Load(),
		"writeCalls": n.conns.crossings.writeCalls.Load(),
		"writeBytes": n.conns.crossings.writeBytes.Load(),
	}, Memory: goMemory()}
	if n.ns != nil {
		var raw map[string]any
		if err := json.Unmarshal([]byte(n.ns.ExpVar().String()), &raw); err != nil {
			return nil, errorf("ENGINE", "netstack counters: %v", err)
		}
		stack := map[string]int64{}
		for k, v := range raw {
			if f, ok := v.(float64); ok {
				stack[k] = int64(f)
			}
		}
		res.TCP = pick(stack, tcpMetrics)
	}
	return jsonValue(res)
}

func pick(from map[string]int64, names map[string]string) map[string]int64 {
	out := make(map[string]int64, len(names))
	for ours, theirs := range names {
		out[ours] = from[theirs]
	}
	return out
}

// goMemory is the Go heap in use and all the memory Go holds (the wasm linear memory it has grown,
// which never shrinks): what the node's buffers and connections cost.
func goMemory() map[string]int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return map[string]int64{"heapInUse": int64(ms.HeapInuse), "sys": int64(ms.Sys)}
}
