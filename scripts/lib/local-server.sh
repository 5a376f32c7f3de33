# Sourced by scripts that drive a throwaway manuel-local (contract.sh, eval-local.sh): starts it
# on a free loopback port with an empty data directory, and stops it on exit.
#
# The caller defines `die` and sets `bin` (the manuel-local binary) and `tmp` (a temporary
# directory, removed on exit), then calls `start_local_server NAME`; afterwards `port`,
# `base_url` and `data_dir` are set. `on_exit_keep_log_for STATUS...` lists exit statuses after
# which the server log is NOT shown (0 by default).
# shellcheck shell=bash disable=SC2154,SC2034

server_pid=""
quiet_statuses=(0)

on_exit_keep_log_for() { quiet_statuses=("$@"); }

# shellcheck disable=SC2317  # called by the EXIT trap
stop_local_server() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local quiet=false code
    for code in "${quiet_statuses[@]}"; do
        [[ "$status" -eq "$code" ]] && quiet=true
    done
    if [[ "$quiet" == false && -s "$tmp/server.log" ]]; then
        echo "${server_name:-manuel-local}: last lines of the server log:" >&2
        tail -n 20 "$tmp/server.log" >&2
    fi
    rm -rf "$tmp"
    exit "$status"
}

start_local_server() {
    server_name="$1"
    trap stop_local_server EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    data_dir="$tmp/data"
    : >"$tmp/server.out"
    "$bin" --host 127.0.0.1 --port 0 --data-dir "$data_dir" >"$tmp/server.out" 2>"$tmp/server.log" &
    server_pid=$!
    port=""
    for _ in $(seq 300); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            cat "$tmp/server.log" >&2
            die "manuel-local exited before listening"
        fi
        local line
        line="$(head -n 1 "$tmp/server.out" 2>/dev/null || true)"
        if [[ "$line" =~ ^manuel-local\ listening\ on\ http://127\.0\.0\.1:([0-9]+) ]]; then
            port="${BASH_REMATCH[1]}"
            break
        fi
        sleep 0.1
    done
    [[ -n "$port" ]] || die "manuel-local did not print its address within 30 s"
    base_url="http://127.0.0.1:$port"
}
