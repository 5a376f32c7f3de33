#!/usr/bin/env bash
# A moto server (a local AWS emulator) for the adapter tests, in its own venv.
#   scripts/moto.sh start   installs moto once, starts it on a free loopback port, prints its URL
#   scripts/moto.sh stop    stops the server this script started
#   scripts/moto.sh install installs moto only (for callers that run their own server)
# The URL is also written to .tools/moto/url.
set -euo pipefail

MOTO_VERSION="5.2.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.tools/moto"
venv="$root/.tools/moto-venv"
mkdir -p "$state"

install() {
    if [[ -x "$venv/bin/moto_server" ]] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        return
    fi
    echo "moto: installing moto[server] $MOTO_VERSION into $venv" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

start() {
    stop_quietly
    install
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$venv/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 "$port" >"$state/server.log" 2>&1 &
    echo $! >"$state/pid"
    local url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('$url/moto-api/', timeout=1)" 2>/dev/null; then
            echo "$url" >"$state/url"
            echo "$url"
            return
        fi
        sleep 0.1
    done
    echo "moto: the server did not start; see $state/server.log" >&2
    stop_quietly
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
