#!/usr/bin/env bash
# Starts a private Docker engine for Hodei's Docker provider and its tests, installing
# Debian's docker.io first when dockerd is missing. Idempotent: an engine already answering
# on the socket is left alone. Prints the DOCKER_HOST to use on its last line.
#
#   HODEI_DOCKER_SOCK   socket path        (default /run/hodei-docker.sock)
#   HODEI_DOCKER_ROOT   engine data root   (default /var/lib/hodei-docker)
set -euo pipefail
sock="${HODEI_DOCKER_SOCK:-/run/hodei-docker.sock}"
data_root="${HODEI_DOCKER_ROOT:-/var/lib/hodei-docker}"
exec_root="${HODEI_DOCKER_EXEC_ROOT:-/run/hodei-docker-exec}"
pidfile="${HODEI_DOCKER_PIDFILE:-/run/hodei-docker.pid}"
log="${HODEI_DOCKER_LOG:-/var/log/hodei-docker.log}"
host="unix://$sock"

answers() { timeout 10 docker -H "$host" info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    echo "installing docker.io (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends docker.io >&2
fi

if answers; then
    echo "DOCKER_HOST=$host"
    exit 0
fi

if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "dockerd (pid $(cat "$pidfile")) is running but not answering yet; waiting" >&2
else
    rm -f "$pidfile" "$sock"
    mkdir -p "$data_root" "$exec_root" "$(dirname "$log")"
    # No iptables and no bridge: this machine allows neither; containers use the host's
    # network (the provider's default network_mode), which is how agents reach the server.
    setsid dockerd \
        --host "$host" \
        --data-root "$data_root" \
        --exec-root "$exec_root" \
        --pidfile "$pidfile" \
        --iptables=false --ip6tables=false --bridge=none \
        >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 120); do
    if answers; then
        echo "DOCKER_HOST=$host"
        exit 0
    fi
    sleep 0.5
done
echo "dockerd did not answer on $sock within 60 s; its log ($log) ends with:" >&2
tail -n 20 "$log" >&2 || true
exit 1
