#!/usr/bin/env bash
# The Go half of `npm run lint`: gofmt and go vet over the wasm node's Go package (GOOS=js GOARCH=wasm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../packages/tailnet-wasm/go"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  printf 'lint-go: not gofmt-formatted (run gofmt -w):\n%s\n' "$unformatted" >&2
  exit 1
fi
GOOS=js GOARCH=wasm go vet ./...
