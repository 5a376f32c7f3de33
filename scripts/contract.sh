#!/usr/bin/env bash
# Contract test: runs schemathesis with openapi.yaml against a freshly started manuel-local.
#
# Usage: scripts/contract.sh            (from anywhere; paths are taken relative to the repo root)
#
# Environment:
#   MANUEL_LOCAL_BIN     the manuel-local binary (default: $CARGO_TARGET_DIR/debug/manuel-local,
#                        or target/debug/manuel-local). Build it first: cargo build -p manuel-local
#   MANUEL_PDFIUM_LIB    libpdfium.so (default: .tools/pdfium/libpdfium.so, installed by
#                        scripts/setup-pdfium.sh when missing)
#   CONTRACT_MAX_EXAMPLES  test cases per operation and phase (default 150; the whole script takes
#                        about 25 s on 2 cores with a debug build)
#   CONTRACT_SEED        hypothesis seed (default 20240601, so runs are reproducible; set
#                        CONTRACT_SEED=random for a new one each run)
#   CONTRACT_REPORT_DIR  if set, JUnit and HAR reports are written there (junit-main.xml,
#                        har-main.json for everything but DELETE /api/user/data; junit-erase.xml,
#                        har-erase.json for it)
#
# Exits non-zero when schemathesis reports a failure (or the server cannot be started).
# The schemathesis venv lives in .tools/schemathesis-venv and is reused when it already has the
# pinned version.
set -euo pipefail

SCHEMATHESIS_VERSION="4.32.5"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
cd "$repo_root"

die() {
    echo "contract: error: $*" >&2
    exit 1
}

# --- schemathesis, in its own venv -------------------------------------------------------------
venv="$repo_root/.tools/schemathesis-venv"
st="$venv/bin/schemathesis"
installed_version() { "$st" --version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p'; }
if [[ ! -x "$st" || "$(installed_version)" != "$SCHEMATHESIS_VERSION" ]]; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for the schemathesis venv)"
    echo "contract: installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" || die "pip could not install schemathesis==$SCHEMATHESIS_VERSION"
    [[ "$(installed_version)" == "$SCHEMATHESIS_VERSION" ]] || die "schemathesis $SCHEMATHESIS_VERSION did not install"
fi

# --- the server --------------------------------------------------------------------------------
bin="${MANUEL_LOCAL_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/debug/manuel-local}"
[[ -x "$bin" ]] || die "no manuel-local binary at $bin (build it: cargo build -p manuel-local, or set MANUEL_LOCAL_BIN)"

if [[ -z "${MANUEL_PDFIUM_LIB:-}" ]]; then
    MANUEL_PDFIUM_LIB="$repo_root/.tools/pdfium/libpdfium.so"
    [[ -f "$MANUEL_PDFIUM_LIB" ]] || "$repo_root/scripts/setup-pdfium.sh"
fi
[[ -f "$MANUEL_PDFIUM_LIB" ]] || die "no pdfium library at $MANUEL_PDFIUM_LIB"
export MANUEL_PDFIUM_LIB
export MANUEL_EMBEDDING_MODEL="${MANUEL_EMBEDDING_MODEL:-$repo_root/.tools/models/all-MiniLM-L6-v2-int8}"
export MANUEL_ONNXRUNTIME="${MANUEL_ONNXRUNTIME:-$repo_root/.tools/onnxruntime/libonnxruntime.so}"
"$repo_root/scripts/setup-models.sh"
# Settings from the caller's environment must not change what is tested: the server runs with
# the dev stage's defaults (no CORS origins, no IP allowlist, no request signing).
unset MANUEL_HOST MANUEL_PORT MANUEL_DATA_DIR MANUEL_MAX_UPLOAD_MB MANUEL_PUBLIC_URL \
    STAGE CORS_ALLOWED_ORIGINS CORS_ALLOW_CREDENTIALS IP_ALLOWLIST TRUSTED_PROXIES \
    HMAC_SIGNING_KEY MAX_REQUEST_BODY_BYTES \
    PRICE_INPUT_PER_1K_TOKENS PRICE_OUTPUT_PER_1K_TOKENS \
    PRICE_TRANSCRIBE_PER_MINUTE PRICE_CURRENCY
# Except the rate limits, which are turned off: one schemathesis worker sends more requests a
# minute than the dev stage allows, and 429s would make the result depend on the machine's speed.
# (429 is documented on every operation.)
export RATE_LIMIT_PER_IP_PER_MINUTE=0 RATE_LIMIT_PER_USER_PER_MINUTE=0
# And the question quotas are raised out of reach: with the default 50 a day, every question after
# the first 50 of the run would be a 429 `quota_exceeded`, and the run would measure quota
# exhaustion instead of the API. (`quota_exceeded` stays documented on POST /api/query; the
# quota itself is tested in crates/local/tests/usage_e2e.rs.)
export DAILY_QUOTA_LIMIT=1000000 MONTHLY_QUOTA_LIMIT=1000000

tmp="$(mktemp -d "${TMPDIR:-/tmp}/manuel-contract.XXXXXX")"
# shellcheck source=scripts/lib/local-server.sh
source "$script_dir/lib/local-server.sh"
on_exit_keep_log_for 0
start_local_server contract

token="$("$bin" token --user contract --data-dir "$data_dir")" || die "could not get a token"

# --- schemathesis configuration ----------------------------------------------------------------
# Everything here only widens what counts as an expected status, with the reason next to it.
cat >"$tmp/schemathesis.toml" <<'TOML'
# 413 is how a server refuses a body that is too large: it is a rejection of invalid data.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# `file_data` must be base64 of a PDF, Markdown or plain-text file and `file_name` must keep a
# letter or digit once sanitized; JSON Schema cannot say either, so schema-valid bodies are
# refused with 400 (bad base64, empty file, unusable name), 413 (too large) or 415 (not a
# supported file type). The examples in openapi.yaml are accepted, which is what creates manuals.
# Schemathesis also reuses an `Idempotency-Key` with another body, which is refused with 422 on
# every operation that takes the header, and sends keys that are not 1-255 visible ASCII
# characters, refused with 400 (the header's schema is a plain string: a client that cannot send
# such a value drops it, and schemathesis counts that as an invalid value accepted).
[[operations]]
include-operation-id = "uploadManual"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422", "429", "5xx"]

# `audio_data` must be base64 of a real clip in a supported format whose content type agrees;
# JSON Schema cannot say that, so schema-valid bodies get 400 (or 413, or 503 locally for a
# real clip: manuel-local has no speech recognition).
[[operations]]
include-operation-id = "transcribeAudio"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "422", "429", "5xx"]

# Any URL is schema-valid; only public http(s) addresses serving a supported manual are fetched
# (the rest are 400, 413 or 415, and this machine reaches no public address).
[[operations]]
include-operation-id = "downloadManual"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422", "429", "5xx"]

# `file_name` must keep a letter or digit once sanitized and `content_type` must be a manual
# type (415 otherwise); a size over the limit is 413.
[[operations]]
include-operation-id = "createUploadLink"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "415", "422", "429", "5xx"]

# The link is the credential: generated query values are never a valid signature (403), and a
# body of another length than the signed one is 400.
[[operations]]
include-operation-id = "uploadFile"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "403", "404", "409", "413", "429", "5xx"]

[[operations]]
include-operation-id = "deleteManual"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]

[[operations]]
include-operation-id = "deleteUserData"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]

# `question` and `manual_ids` are refused with 400 when they carry markup, template, traversal or
# SQL-injection payloads, and `manual_ids` must be identifiers; JSON Schema cannot say that either.
# A spoken question's `file_data` must be a real clip (400 otherwise, 503 locally for a real one).
[[operations]]
include-operation-id = "queryManuals"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "422", "429", "5xx"]

# The streaming question takes the same body, refused the same way before the stream begins.
[[operations]]
include-operation-id = "queryManualsStreaming"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "422", "429", "5xx"]

# Stateful phase: only the links written in openapi.yaml. Schemathesis would also infer links from
# field names, and one of its guesses (`file_name` refers to the resource behind `/files/{key}`,
# which nothing creates) demotes the upload as a starting point whenever any other operation can
# start: then GET /api/manuals is the only start and none of the upload's links is followed.
# With the written links only, every link is followed (upload -> show/delete -> show).
[phases.stateful.inference]
algorithms = ["location-headers"]

# `pdf_url` must name one of the caller's own manuals (a link this server signed for them, or
# their storage key): any other string is schema-valid and answered 404, and nothing is fetched.
[[operations]]
include-operation-id = "renderPdfPage"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "415", "422", "429", "5xx"]

# `job_id` must be one of the caller's manuals (any other string is 404).
[[operations]]
include-operation-id = "ingestionStatus"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# `next_token` is an opaque cursor: any string is schema-valid, only tokens this API issued are
# accepted, the others are 400.
[[operations]]
include-operation-id = "listManuals"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]
TOML

max_examples="${CONTRACT_MAX_EXAMPLES:-150}"
seed="${CONTRACT_SEED:-20240601}"
args=(
    --config-file "$tmp/schemathesis.toml"
    run "$repo_root/openapi.yaml"
    --url "$base_url"
    --header "Authorization: Bearer $token"
    --checks all
    --max-examples "$max_examples"
    --generation-database none
    --request-timeout 30
    # One worker: with several, hypothesis parses lambda sources from concurrent threads and
    # CPython 3.11's ast module fails ("AST constructor recursion depth mismatch").
    --workers 1
    --no-color
)
[[ "$seed" == "random" ]] || args+=(--seed "$seed")

# Two runs against the same server. `DELETE /api/user/data` erases every manual of the caller, and
# schemathesis schedules it with the operations that create data, before the ones that read it
# (GET/DELETE /api/manuals/{id}) and before the stateful phase: in one run those would only ever
# see an empty account. So everything else is tested first, then the erasure on its own, on the
# account the first run left behind. (The erasure has no links and no parameters: the stateful
# phase has nothing to run for it and the examples phase nothing to send.)
# Each run has a time limit (SIGINT, so schemathesis still prints its report) that keeps the whole
# script under 3 minutes; both take a small fraction of it (about 20 s and 1 s on 2 cores).
runs=(main erase)
run_args() {
    case "$1" in
        main) echo --exclude-operation-id deleteUserData --phases examples,coverage,fuzzing,stateful ;;
        erase) echo --include-operation-id deleteUserData --phases coverage,fuzzing ;;
    esac
}
run_limit() {
    case "$1" in
        main) echo 140 ;;
        erase) echo 20 ;;
    esac
}

echo "contract: schemathesis $SCHEMATHESIS_VERSION against $base_url (max $max_examples examples, seed $seed)" >&2
status=0
for run in "${runs[@]}"; do
    # shellcheck disable=SC2207  # run_args prints fixed words without spaces or globs.
    these=("${args[@]}" $(run_args "$run"))
    if [[ -n "${CONTRACT_REPORT_DIR:-}" ]]; then
        mkdir -p "$CONTRACT_REPORT_DIR"
        these+=(--report junit,har --report-dir "$CONTRACT_REPORT_DIR"
            --report-junit-path "$CONTRACT_REPORT_DIR/junit-$run.xml"
            --report-har-path "$CONTRACT_REPORT_DIR/har-$run.json")
    fi
    if [[ "$run" == erase ]]; then
        # The first run's stateful phase usually deletes every manual it finds; upload one so
        # the erasure has a manual to remove and not only usage records.
        "$venv/bin/python" - "$base_url" "$token" <<'PY' || die "could not upload a manual before the erase run"
import json, sys, urllib.request
base_url, token = sys.argv[1], sys.argv[2]
body = json.dumps({"file_name": "erase-me.txt", "file_data": "RXJhc2UgbWUuIFByZXNzIHRoZSBidXR0b24gdG8gc3RhcnQuCg=="}).encode()
request = urllib.request.Request(base_url + "/api/manuals/upload", data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as response:
    assert response.status in (200, 201), response.status
PY
    fi
    echo "contract: run '$run'" >&2
    # Run from the temporary directory so nothing schemathesis writes lands in the repository.
    run_status=0
    (cd "$tmp" && timeout --signal=INT "$(run_limit "$run")" "$st" "${these[@]}") || run_status=$?
    if [[ $run_status -eq 124 ]]; then
        echo "contract: schemathesis run '$run' was stopped after $(run_limit "$run") s" >&2
        status=$run_status
    elif [[ $run_status -ne 0 ]]; then
        echo "contract: schemathesis run '$run' failed (exit $run_status)" >&2
        status=$run_status
    fi
done
exit "$status"
