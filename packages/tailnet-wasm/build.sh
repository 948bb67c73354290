#!/usr/bin/env bash
# Builds build/tailnet.wasm from go/ (GOOS=js GOARCH=wasm) and copies Go's own wasm_exec.js next to
# it as build/wasm_exec.cjs. Skipped when the sources, go.mod/go.sum and the Go version are
# unchanged since the last build (build/build-info.json records their hash).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/build"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

command -v go >/dev/null 2>&1 || { echo "tailnet-wasm: error: Go is not installed (need Go >= 1.26.6 on PATH)" >&2; exit 1; }

cd "$here/go"
# TAILNET_WASM_NAMES=1 keeps the wasm name section (no -s), so `node --cpu-prof` names Go functions.
names=${TAILNET_WASM_NAMES:-0}
ldflags="-s -w"
[ "$names" = 1 ] && ldflags="-w"
inputs=$( { go env GOVERSION; echo "names=$names"; find . ../overlay -type f \( -name '*.go' -o -name '*.patch' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-64)
if [ -f "$out/tailnet.wasm" ] && [ -f "$out/wasm_exec.cjs" ] && grep -q "\"inputs\": \"$inputs\"" "$out/build-info.json" 2>/dev/null; then
  echo "tailnet-wasm: up to date ($(du -h "$out/tailnet.wasm" | cut -f1))"
  exit 0
fi

mkdir -p "$out"
echo "tailnet-wasm: building tailnet.wasm (GOOS=js GOARCH=wasm, about a minute)"
tags=$(go run ./cmd/buildtags)
start=$(date +%s)
# tailscale.com patches (overlay/, see overlay.sh): applied to copies, the module cache is untouched.
work=$(mktemp -d "${TMPDIR:-/tmp}/tailnet-wasm-overlay.XXXXXX")
trap 'rm -rf "$work"' EXIT
bash "$here/overlay.sh" "$work"
GOOS=js GOARCH=wasm go build -modfile "$work/go.mod" -overlay "$work/overlay.json" -tags "$tags" -trimpath -ldflags "$ldflags" -o "$out/tailnet.wasm.tmp" .
mv "$out/tailnet.wasm.tmp" "$out/tailnet.wasm"
# The only upstream file the build copies: Go's JS glue for wasm, matching the compiler exactly.
cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" "$out/wasm_exec.cjs"

size=$(stat -c %s "$out/tailnet.wasm")
tsver=$(go list -m -f '{{.Version}}' tailscale.com)
cat > "$out/build-info.json" <<JSON
{
  "inputs": "$inputs",
  "goVersion": "$(go env GOVERSION)",
  "tailscaleVersion": "$tsver",
  "wasmBytes": $size,
  "sha256": "$(sha256sum "$out/tailnet.wasm" | cut -c1-64)",
  "buildSeconds": $(( $(date +%s) - start )),
  "tags": "$tags",
  "nameSection": $( [ "$names" = 1 ] && echo true || echo false )
}
JSON
echo "tailnet-wasm: built tailnet.wasm, $size bytes (tailscale.com $tsver) in $(( $(date +%s) - start ))s"
