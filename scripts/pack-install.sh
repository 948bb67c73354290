#!/usr/bin/env bash
# Packs every published workspace (npm pack) and installs the tarballs into DEST the way a user's
# `npm install` would, without Go or the repository: DEST/node_modules/.bin/{krkns,krknc}.
#   bash scripts/pack-install.sh DEST
# Needs a built tree (npm run setup). The Dockerfile's build stage and the packaging test
# (scripts/test/packaging.test.ts) both run this script, so CI breaks when the image build would.
# Until @krkn/* are in the registry, `npm install -g krkns` cannot find them: DEST's package.json
# names every tarball, so they satisfy each other.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/pack-install.sh DEST" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1/tarballs"
dest=$(cd "$1" && pwd)
# shellcheck source=node-headers.sh
source "$root/scripts/node-headers.sh"

# (@krkn/tailnet-wasm's prepack checks its build/ the same way.)
for required in apps/krkns/dist/main.js apps/krknc/dist/main.js; do
  [ -f "$root/$required" ] || { echo "pack-install: $required is missing: run npm run setup first" >&2; exit 1; }
done

# Every workspace not marked private, as -w flags.
workspaces=$(cd "$root" && node -e '
  const { readdirSync, readFileSync } = require("node:fs");
  for (const dir of ["packages", "apps"].flatMap((top) => readdirSync(top).map((d) => `${top}/${d}`))) {
    const pkg = JSON.parse(readFileSync(`${dir}/package.json`, "utf8"));
    if (!pkg.private) console.log(`-w=${dir}`);
  }')
# shellcheck disable=SC2086 # one -w flag per word
(cd "$root" && npm pack --silent --pack-destination "$dest/tarballs" $workspaces) >/dev/null

(cd "$dest" && node -e '
  const { readdirSync, writeFileSync } = require("node:fs");
  const dependencies = {};
  for (const file of readdirSync("tarballs")) {
    const name = file.replace(/-\d+\.\d+\.\d+\.tgz$/, "").replace(/^krkn-/, "@krkn/");
    dependencies[name] = `file:tarballs/${file}`;
  }
  writeFileSync("package.json", JSON.stringify({ private: true, dependencies }, null, 2) + "\n");')
(cd "$dest" && npm install --omit=dev --no-audit --no-fund --loglevel=error)
echo "pack-install: krkns and krknc installed in $dest/node_modules/.bin"
