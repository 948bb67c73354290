#!/usr/bin/env bash
# Everything `npm test` and `npm run demo` need on a fresh clone, in order: npm packages, Go tools,
# the wasm node, the TypeScript. Plain bash (no node_modules needed to start it). Idempotent: each
# step checks what is there and skips what is done. One line per step; a step's own output goes to
# a log that is printed only when the step fails.
#   --without-go  for docker/Dockerfile's build stage: no Go tools, and the wasm node must already be
#                 in packages/tailnet-wasm/build (the image builds it in a Go stage)
set -euo pipefail
without_go=false
case "${1:-}" in
  '') ;;
  --without-go) without_go=true ;;
  *) echo "usage: scripts/setup.sh [--without-go]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# step NAME COMMAND...: runs COMMAND quietly; one line "setup: NAME: <its last line>", whose start
# is printed first so a long step (a native build, the first wasm build) shows what it is doing.
step() {
  local name=$1
  shift
  printf 'setup: %s: ' "$name"
  if "$@" >"$log" 2>&1; then
    printf '%s\n' "$(grep -v '^[[:space:]]*$' "$log" | tail -n1)"
  else
    printf 'FAILED\n'
    cat "$log" >&2
    exit 1
  fi
}

supported=$(node -p 'require("./package.json").engines.node')
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt "${supported#>=}" ]; then
  printf 'setup: warning: Node %s is not supported (end of life); krkn needs Node %s\n' \
    "$(node --version)" "$supported" >&2
fi

# shellcheck source=node-headers.sh
source scripts/node-headers.sh

# npm packages: installed from the lockfile when it is newer than what npm last installed (npm
# writes node_modules/.package-lock.json at the end of every install); the native SQLite binding is
# rebuilt when it does not load in this Node (a new clone, or a switch between Node 22 and 24).
npm_packages() {
  local did="up to date"
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --ignore-scripts
    did="installed from package-lock.json"
  fi
  if ! node -e "new (require('better-sqlite3'))(':memory:').close()" 2>/dev/null; then
    npm rebuild better-sqlite3
    did="$did; better-sqlite3 built for Node $(node --version)"
  fi
  echo "$did"
}

# The TypeScript, and the execute bit on every workspace's bin entries (npm links them at install
# time, before dist/ exists, so it cannot set it then).
typescript() {
  npx tsc -b
  node -e '
    const { chmodSync, readdirSync, readFileSync } = require("node:fs");
    for (const dir of ["packages", "apps"].flatMap((top) => readdirSync(top).map((d) => `${top}/${d}`))) {
      const { bin = {} } = JSON.parse(readFileSync(`${dir}/package.json`, "utf8"));
      for (const file of Object.values(bin)) chmodSync(`${dir}/${file}`, 0o755);
    }'
  echo "compiled (tsc -b)"
}

wasm_present() {
  test -f packages/tailnet-wasm/build/tailnet.wasm && test -f packages/tailnet-wasm/build/wasm_exec.cjs
  node -p 'const b = require("./packages/tailnet-wasm/build/build-info.json");
    `prebuilt (tailscale.com ${b.tailscaleVersion}, ${b.goVersion})`'
}

step "npm packages" npm_packages
if $without_go; then
  step "wasm node" wasm_present
else
  step "Go tools" bash scripts/tools.sh
  step "wasm node" bash packages/tailnet-wasm/build.sh
fi
step "TypeScript" typescript
