#!/usr/bin/env bash
# Installs the pinned Go tools krkn's tests and demo need into .tools/bin (git-ignored):
# headscale (the local control server) and native tailscaled + tailscale (independent peers).
# Idempotent: a binary already built from the pinned version is left alone.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$root/scripts/versions.env"
bin="$root/.tools/bin"
export GOTOOLCHAIN=local GOBIN="$bin" GOFLAGS=-buildvcs=false

say() { printf 'tools: %s\n' "$*"; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= $GO_MIN_VERSION on PATH: https://go.dev/doc/install)"
have=$(go env GOVERSION | sed 's/^go//')
lowest=$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)
[ "$lowest" = "$GO_MIN_VERSION" ] || die "Go $have is too old: krkn needs Go >= $GO_MIN_VERSION (GOTOOLCHAIN=local, no toolchain download)"

# built_from BINARY MODULE VERSION: true when BINARY exists and was built from MODULE@VERSION.
built_from() {
  [ -x "$bin/$1" ] && go version -m "$bin/$1" 2>/dev/null | grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"
}

mkdir -p "$bin"

if built_from headscale github.com/juanfont/headscale "$HEADSCALE_VERSION"; then
  say "headscale $HEADSCALE_VERSION already installed"
else
  say "installing headscale $HEADSCALE_VERSION"
  # `go install module@version` asks the proxy for the module's version list (to check deprecation),
  # which the proxy refuses for headscale; installing from a throwaway module that requires the pinned
  # version builds the same binary from headscale's own go.mod without that look-up.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && go mod init krkn.local/tools >/dev/null 2>&1 \
    && go get "github.com/juanfont/headscale/cmd/headscale@$HEADSCALE_VERSION" \
    && CGO_ENABLED=0 go install github.com/juanfont/headscale/cmd/headscale) \
    || die "building headscale $HEADSCALE_VERSION failed (see the go output above)"
fi

if built_from tailscaled tailscale.com "$TAILSCALE_VERSION" && built_from tailscale tailscale.com "$TAILSCALE_VERSION"; then
  say "tailscaled and tailscale $TAILSCALE_VERSION already installed"
else
  say "installing tailscaled and tailscale $TAILSCALE_VERSION"
  go install "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION" "tailscale.com/cmd/tailscale@$TAILSCALE_VERSION" \
    || die "building tailscaled $TAILSCALE_VERSION failed (see the go output above)"
fi

say "ready in $bin: $(cd "$bin" && ls | tr '\n' ' ')"
