#!/usr/bin/env bash
# Checks what deploys krkn without running it: the Dockerfile (dockerfile-utils, from npm), the
# systemd unit (systemd-analyze verify, and its security score offline) and every shell script
# (shellcheck). CI runs it; needs the built tree (npm run setup) for the unit's ExecStart.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
source scripts/versions.env

say() { printf 'lint-deploy: %s\n' "$*"; }

npx --yes "dockerfile-utils@$DOCKERFILE_UTILS_VERSION" lint docker/Dockerfile
say "docker/Dockerfile: no problems (dockerfile-utils $DOCKERFILE_UTILS_VERSION)"

# verify also checks that ExecStart exists: point it at this tree's krkns, the rest verbatim.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/local/bin/krkns |ExecStart=$root/apps/krkns/dist/main.js |" systemd/krkns.service \
  >"$work/krkns.service"
grep -q "^ExecStart=$root/" "$work/krkns.service" \
  || { say "systemd/krkns.service: ExecStart is not /usr/local/bin/krkns"; exit 1; }
out=$(systemd-analyze verify "$work/krkns.service" 2>&1) || { printf '%s\n' "$out"; exit 1; }
[ -z "$out" ] || { printf '%s\n' "$out"; say "systemd/krkns.service: systemd-analyze verify warned"; exit 1; }
# The threshold is in tenths: 20 = an overall exposure of 2.0 (systemd calls below 2.0 "OK").
systemd-analyze security --offline=yes --threshold=20 "$work/krkns.service" >"$work/security.txt" \
  || { cat "$work/security.txt"; say "systemd/krkns.service: exposure above 2.0"; exit 1; }
say "systemd/krkns.service: verified, $(grep -o 'exposure level.*' "$work/security.txt")"

shellcheck --external-sources --source-path=scripts --severity=warning \
  .ci/run scripts/*.sh docker/entrypoint.sh packages/tailnet-wasm/build.sh
say "shell scripts: shellcheck clean"
