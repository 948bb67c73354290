#!/usr/bin/env bash
# Usage: overlay.sh WORKDIR (run from packages/tailnet-wasm/go). Prepares a build of the node with
# the tailscale.com patches in overlay/tailscale.com@<version>/: each `<file>.patch` is applied to a
# copy of that module file, each `.go` file is added to its package. Go refuses -overlay entries
# under GOMODCACHE, so WORKDIR/go.mod (for -modfile) replaces tailscale.com with WORKDIR/tailscale.com,
# a symlink to the unchanged module, and WORKDIR/overlay.json (for -overlay) names files beneath it.
# The patches are pinned to the version in go.mod: another version fails here, loudly, instead of
# building a node without them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tsver=$(go list -m -f '{{.Version}}' tailscale.com)
src="$here/overlay/tailscale.com@$tsver"
if [ ! -d "$src" ]; then
  echo "tailnet-wasm: error: no overlay for tailscale.com $tsver (have: $(ls "$here/overlay")); port the patches" >&2
  exit 1
fi
moddir=$(go list -m -f '{{.Dir}}' tailscale.com)
work=$1
ln -s "$moddir" "$work/tailscale.com"
cp go.mod "$work/go.mod"
cp go.sum "$work/go.sum"
echo "replace tailscale.com => $work/tailscale.com" >> "$work/go.mod"
entries=()
while IFS= read -r rel; do
  case "$rel" in
    *.patch)
      target=${rel%.patch}
      mkdir -p "$work/patched/$(dirname "$target")"
      cp "$moddir/$target" "$work/patched/$target"
      chmod u+w "$work/patched/$target"
      patch --quiet --forward --no-backup-if-mismatch "$work/patched/$target" "$src/$rel" >&2 ||
        { echo "tailnet-wasm: error: $rel does not apply to tailscale.com $tsver" >&2; exit 1; }
      entries+=("\"$work/tailscale.com/$target\": \"$work/patched/$target\"")
      ;;
    *.go) entries+=("\"$work/tailscale.com/$rel\": \"$src/$rel\"") ;;
  esac
done < <(cd "$src" && find . -type f \( -name '*.patch' -o -name '*.go' \) | sed 's|^\./||' | LC_ALL=C sort)
printf '{"Replace": {%s}}\n' "$(IFS=,; echo "${entries[*]}")" > "$work/overlay.json"
