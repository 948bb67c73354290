#!/bin/sh
# The image's entrypoint (after tini): takes the auth key from a secret file when TS_AUTHKEY is not
# set, so the key is in neither the image, the compose file nor any process's argv, then runs krkns.
#   TS_AUTHKEY_FILE  file holding the key (default /run/secrets/ts_authkey, compose's secret path)
set -eu
key_file=${TS_AUTHKEY_FILE:-/run/secrets/ts_authkey}
if [ -z "${TS_AUTHKEY:-}" ] && [ -r "$key_file" ]; then
  TS_AUTHKEY=$(cat "$key_file")
  export TS_AUTHKEY
fi
unset TS_AUTHKEY_FILE
exec krkns "$@"
