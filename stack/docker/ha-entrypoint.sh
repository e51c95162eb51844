#!/bin/sh
# Write CHAOS_CONFIG (a member's configuration, made by the suite) to CHAOS_CONFIG_FILE, readable by this
# container's user only, then exec the command (Patroni, HAProxy; etcd and the API need no file).
set -eu
if [ -n "${CHAOS_CONFIG_FILE:-}" ]; then
  umask 077
  printf '%s\n' "${CHAOS_CONFIG:-}" > "$CHAOS_CONFIG_FILE"
  unset CHAOS_CONFIG
fi
exec "$@"
