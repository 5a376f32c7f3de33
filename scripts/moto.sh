#!/usr/bin/env bash
# A moto server (a local AWS emulator) for the adapter tests, in its own venv.
#   scripts/moto.sh start   installs moto once, starts it on a free loopback port, prints its URL
#   scripts/moto.sh start-iam  a second server that enforces IAM (see below); prints
#                              "URL ADMIN_KEY:ADMIN_SECRET"
#   scripts/moto.sh stop    stops the servers this script started
#   scripts/moto.sh install installs moto only (for callers that run their own server)
# The URL is also written to .tools/moto/url (.tools/moto-iam/url).
#
# The IAM-enforcing server (for the Lambda-binary tests, crates/lambda-harness) starts with
# INITIAL_NO_AUTH_ACTION_COUNT=3: its first three requests create an admin user, its policy and
# its access key; every later request must be signed by a known user and is authorised against
# that user's policies, as AWS would (moto checks the action for every service, and the
# resource for S3 and SQS only).
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
    stop_quietly "$state"
    install
    serve "$state" ""
    cat "$state/url"
}

start_iam() {
    local iam_state="$root/.tools/moto-iam"
    mkdir -p "$iam_state"
    stop_quietly "$iam_state"
    install
    serve "$iam_state" 3
    local url admin
    url="$(cat "$iam_state/url")"
    admin="$("$venv/bin/python" - "$url" <<'PY'
import json, sys
import boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="admin")
iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="admin")["AccessKey"]
print(f"{key['AccessKeyId']}:{key['SecretAccessKey']}")
PY
)" || { echo "moto: could not create the admin user" >&2; stop_quietly "$iam_state"; exit 1; }
    echo "$url $admin"
}

# serve STATE_DIR NO_AUTH_COUNT: starts a server (IAM enforced after NO_AUTH_COUNT requests when
# given) and waits until it answers; writes STATE_DIR/url.
serve() {
    local dir="$1" no_auth="$2" port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [[ -n "$no_auth" ]]; then
        INITIAL_NO_AUTH_ACTION_COUNT="$no_auth" \
            "$venv/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 "$port" >"$dir/server.log" 2>&1 &
    else
        "$venv/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 "$port" >"$dir/server.log" 2>&1 &
    fi
    echo $! >"$dir/pid"
    local url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('$url/moto-api/', timeout=1)" 2>/dev/null; then
            echo "$url" >"$dir/url"
            return
        fi
        sleep 0.1
    done
    echo "moto: the server did not start; see $dir/server.log" >&2
    stop_quietly "$dir"
    exit 1
}

stop_quietly() {
    local dir="$1"
    if [[ -f "$dir/pid" ]]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid" "$dir/url"
    fi
}

case "${1:-}" in
    start) start ;;
    start-iam) start_iam ;;
    stop) stop_quietly "$state"; stop_quietly "$root/.tools/moto-iam" ;;
    install) install ;;
    *) echo "usage: $0 start|start-iam|stop|install" >&2; exit 2 ;;
esac
