#!/usr/bin/env bash
# Serve the Docker API from Podman on a unix socket, for oiflow's docker runner and container tests.
#
#   containers/podman-service.sh start   → prints the URL (unix:///…/podman.sock); idempotent
#   containers/podman-service.sh stop    → stops the service this script started (by its pid file)
#   containers/podman-service.sh url     → prints the URL
#
# Use it with:  export OIFLOW_DOCKER_URL=$(containers/podman-service.sh start)
# Directory: $OIFLOW_PODMAN_DIR (default /tmp/oiflow-podman-$UID, or $OIFLOW_PODMAN_ROOT/service).
# CONTAINERS_CONF and OIFLOW_PODMAN_ROOT as for build.sh (containers/env.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/env.sh"   # CONTAINERS_CONF, and a store of its own with OIFLOW_PODMAN_ROOT
DIR="${OIFLOW_PODMAN_DIR:-/tmp/oiflow-podman-$(id -u)}"
SOCK="$DIR/podman.sock"
PIDFILE="$DIR/service.pid"
URL="unix://$SOCK"

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
    start)
        mkdir -p "$DIR"
        if ! running; then
            rm -f "$SOCK"
            nohup podman system service --time=0 "$URL" >"$DIR/service.log" 2>&1 &
            echo $! >"$PIDFILE"
            for _ in $(seq 1 100); do
                if [[ -S "$SOCK" ]] && podman --url "$URL" version >/dev/null 2>&1; then break; fi
                sleep 0.1
            done
            podman --url "$URL" version >/dev/null 2>&1 \
                || { echo "podman-service.sh: the service did not start; see $DIR/service.log" >&2; exit 1; }
        fi
        echo "$URL"
        ;;
    stop)
        if running; then kill "$(cat "$PIDFILE")"; fi
        rm -f "$PIDFILE" "$SOCK"
        ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
