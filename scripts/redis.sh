#!/usr/bin/env bash
# A redis-server on loopback for the L2 cache tests.
#   scripts/redis.sh start   installs redis-server (Debian package) if missing, starts it on a
#                            free port without persistence, prints its URL
#   scripts/redis.sh stop    stops the server this script started
#   scripts/redis.sh install only installs redis-server (tests that start their own need it)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.tools/redis"
mkdir -p "$state"

install() {
    command -v redis-server >/dev/null 2>&1 && return
    echo "redis: installing redis-server" >&2
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
    # The package starts a system instance on 6379; the tests use their own.
    $sudo service redis-server stop >/dev/null 2>&1 || true
}

start() {
    stop_quietly
    install
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$state/pid" --logfile "$state/server.log" --dir "$state" >/dev/null
    for _ in $(seq 1 50); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            echo "redis://127.0.0.1:$port" >"$state/url"
            echo "redis://127.0.0.1:$port"
            return
        fi
        sleep 0.1
    done
    echo "redis: the server did not start; see $state/server.log" >&2
    exit 1
}

stop_quietly() {
    if [[ -f "$state/pid" ]]; then
        kill "$(cat "$state/pid")" 2>/dev/null || true
        rm -f "$state/pid" "$state/url"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop_quietly ;;
    install) install ;;
    *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
