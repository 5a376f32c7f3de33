#!/usr/bin/env bash
# Answer-quality evaluation against a freshly started manuel-local (what `make eval` runs).
#
# Usage: scripts/eval-local.sh [EXTRA eval.py ARGUMENTS...]     e.g. --check, --only gp01,av03
#
# Starts manuel-local on a free port with an empty temporary data directory, raised question
# quotas and no rate limits, gets a token for the user `eval`, fetches the manuals
# (scripts/eval-manuals.sh), runs scripts/eval.py against the server, and stops the server.
# The report goes to eval/report/ (report.md, report.json; EVAL_REPORT_DIR to change it).
#
# Environment:
#   MANUEL_LOCAL_BIN   the manuel-local binary (default: $CARGO_TARGET_DIR/debug/manuel-local, or
#                      target/debug/manuel-local; built with `cargo build -p manuel-local` when
#                      missing)
#   MANUEL_PDFIUM_LIB  libpdfium.so (default: .tools/pdfium/libpdfium.so, installed by
#                      scripts/setup-pdfium.sh when missing)
#   EVAL_REPORT_DIR    where the reports go (default: eval/report)
#   EVAL_SPEECH=1      also speak a sample of the questions (scripts/eval-speech.py; needs
#                      espeak-ng and sox) and report how they were heard and answered
#   MANUEL_SPEECH_MODEL  the Whisper model that hears them (default .tools/models/whisper-tiny.en;
#                      SETUP_WHISPER_BASE=1 scripts/setup-models.sh installs whisper-base)
#
# Exits with eval.py's status: 0 (1 with --check when below target, 2 when the run failed).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
cd "$repo_root"

die() {
    echo "eval-local: error: $*" >&2
    exit 2
}

command -v python3 >/dev/null 2>&1 || die "python3 not found"

bin="${MANUEL_LOCAL_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/debug/manuel-local}"
if [[ ! -x "$bin" ]]; then
    if [[ -n "${MANUEL_LOCAL_BIN:-}" ]]; then
        die "MANUEL_LOCAL_BIN=$bin is not an executable"
    fi
    echo "eval-local: no manuel-local at $bin; building it (cargo build -p manuel-local)" >&2
    "${CARGO:-cargo}" build -p manuel-local || die "cargo build -p manuel-local failed"
    [[ -x "$bin" ]] || die "no manuel-local binary at $bin after the build"
fi

if [[ -z "${MANUEL_PDFIUM_LIB:-}" ]]; then
    MANUEL_PDFIUM_LIB="$repo_root/.tools/pdfium/libpdfium.so"
    [[ -f "$MANUEL_PDFIUM_LIB" ]] || "$repo_root/scripts/setup-pdfium.sh"
fi
[[ -f "$MANUEL_PDFIUM_LIB" ]] || die "no pdfium library at $MANUEL_PDFIUM_LIB"
export MANUEL_PDFIUM_LIB
export MANUEL_EMBEDDING_MODEL="${MANUEL_EMBEDDING_MODEL:-$repo_root/.tools/models/all-MiniLM-L6-v2-int8}"
export MANUEL_ONNXRUNTIME="${MANUEL_ONNXRUNTIME:-$repo_root/.tools/onnxruntime/libonnxruntime.so}"
export MANUEL_SPEECH_MODEL="${MANUEL_SPEECH_MODEL:-$repo_root/.tools/models/whisper-tiny.en}"
"$repo_root/scripts/setup-models.sh"

"$script_dir/eval-manuals.sh"

# The caller's settings must not change what is measured: dev-stage defaults, except that the
# rate limits are off and the question quotas out of reach (the default 50 questions a day is
# fewer than the evaluation asks).
unset MANUEL_HOST MANUEL_PORT MANUEL_DATA_DIR MANUEL_MAX_UPLOAD_MB MANUEL_PUBLIC_URL \
    STAGE CORS_ALLOWED_ORIGINS CORS_ALLOW_CREDENTIALS IP_ALLOWLIST TRUSTED_PROXIES \
    HMAC_SIGNING_KEY MAX_REQUEST_BODY_BYTES REDIS_URL
export RATE_LIMIT_PER_IP_PER_MINUTE=0 RATE_LIMIT_PER_USER_PER_MINUTE=0
export DAILY_QUOTA_LIMIT=1000000 MONTHLY_QUOTA_LIMIT=1000000

tmp="$(mktemp -d "${TMPDIR:-/tmp}/manuel-eval.XXXXXX")"
# shellcheck source=scripts/lib/local-server.sh
source "$script_dir/lib/local-server.sh"
on_exit_keep_log_for 0 1
start_local_server eval-local

token="$("$bin" token --user eval --data-dir "$data_dir")" || die "could not get a token"

echo "eval-local: manuel-local ($bin) on port $port" >&2
status=0
report_dir="${EVAL_REPORT_DIR:-$repo_root/eval/report}"
python3 "$script_dir/eval.py" --api "http://127.0.0.1:$port" --token "$token" \
    --report-dir "$report_dir" "$@" || status=$?
# Spoken questions (EVAL_SPEECH=1): a sample of the same questions spoken by espeak-ng voices,
# heard by the server's speech model (MANUEL_SPEECH_MODEL, tiny.en by default), reported in
# speech.json: word error rate, right page first, transcription time.
if [[ $# -eq 0 && "${EVAL_SPEECH:-0}" == 1 ]]; then
    echo "eval-local: spoken questions ($MANUEL_SPEECH_MODEL)" >&2
    python3 "$script_dir/eval-speech.py" --api "http://127.0.0.1:$port" --token "$token" \
        --report "$report_dir/speech.json" || status=$?
fi
# The held-out set (eval/emanual-qa: a phone manual and questions written by others), reported
# apart and never a target; skipped when the run was narrowed with arguments.
if [[ $# -eq 0 && "${EVAL_HELD_OUT:-1}" != 0 ]]; then
    echo "eval-local: the held-out set, E-Manual QA" >&2
    python3 "$script_dir/eval.py" --api "http://127.0.0.1:$port" --token "$token" \
        --questions "$repo_root/eval/emanual-qa/questions.json" \
        --manuals "$repo_root/eval/emanual-qa" --report-dir "$report_dir/emanual-qa" || status=$?
fi
exit "$status"
