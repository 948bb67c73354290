// Command buildtags prints the -tags value for the wasm build: a few base tags plus ts_omit_<f>
// for every optional tailscale.com feature the node does not need. Feature dependencies come from
// tailscale.com's own registry, so a feature we keep never loses something it requires.
package main

import (
	"fmt"
	"slices"
	"strings"

	"tailscale.com/feature/featuretags"
)

// keep lists the features the node links. Everything else is omitted, logtail included: krkn
// never uploads logs to Tailscale.
var keep = []featuretags.FeatureTag{
	"netstack",      // userspace TCP/IP: js/wasm has no TUN
	"dns",           // MagicDNS names for dial and ping
	"health",        // health warnings surfaced to the host
	"clientmetrics", // magicsock's DERP send/drop counters, for metrics()
	"ipnbus",        // the notification stream (state, login URL, self, peers)
	"c2n",           // control-to-node requests the control server may send
	"cachenetmap",   // restart Running from the cached self node (overlay/: kept in the state store)
}

var baseTags = []string{"osusergo", "netgo", "omitidna", "omitpemdecrypt"}

func main() {
	linked := map[featuretags.FeatureTag]bool{}
	for _, ft := range keep {
		if _, ok := featuretags.Features[ft]; !ok {
			panic(fmt.Sprintf("unknown feature %q: did tailscale.com rename it?", ft))
		}
		for dep := range featuretags.Requires(ft) {
			linked[dep] = true
		}
	}
	tags := slices.Clone(baseTags)
	for ft := range featuretags.Features {
		if ft != "" && ft.IsOmittable() && !linked[ft] {
			tags = append(tags, ft.OmitTag())
		}
	}
	slices.Sort(tags)
	fmt.Println(strings.Join(tags, ","))
}
