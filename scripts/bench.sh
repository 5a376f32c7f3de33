#!/usr/bin/env bash
# `make bench`: measures the performance budget and writes bench/report/latest.md and
# latest.json, and BENCHMARKS.md (the committed copy of the latest report).
#
#   1-2. cold start proxy (spawn -> first response, >= 20 starts) and peak RSS over 1,000 warm
#        invocations of the six release Lambda binaries, against a local Runtime API and moto
#   3.   the zipped arm64 artifacts of `make build`, when they exist (BENCH_ARM64=1 builds them)
#   4.   warm in-process cost per HTTP route, with zero-latency fakes (crates/bench)
#   5.   manuel-local (release) under load from wrk: /api/user/quota, /api/manuals, /api/query
#   6.   local ingestion of a 329-page PDF and question latency over ~1,000 indexed pages, and
#        streamed answers there (first byte, first delta)
#   7.   streamed answers through the streaming query function (release binary, streaming
#        Runtime API, moto, the Bedrock fake at Bedrock's pace): first byte, first delta, and a
#        2,000-token answer past 29 s
#
# Environment:
#   BENCH_TARGET_DIR   cargo target dir of the release builds
#                      (default: $HOME/.cache/manuel/target-bench, apart from the debug builds)
#   BENCH_LAMBDA_DIR   where `make build` put <binary>/bootstrap.zip
#                      (default: ${CARGO_TARGET_DIR:-target}/lambda, as scripts/lambda-build.sh)
#   BENCH_ARM64=1      run `make build` first (cargo-lambda, arm64; slow)
#   BENCH_ONLY         a comma-separated subset of: lambdas,artifacts,routes,local,stream
#   BENCH_STARTS (20)  BENCH_WARM (1000)  BENCH_ROUTE_ITERATIONS (5000)
#   BENCH_LOAD_SECONDS (10)  BENCH_SKIP_INGEST=1  BENCH_NICE (10: niceness of the builds)
#   BENCH_NO_BUILD=1   use the binaries already in BENCH_TARGET_DIR/release
#   BENCH_ORDERS       the PDFs ingested for part 6, as concatenation orders of the Gutenprint (g,
#                      73 pages) and AVRDUDE (a, 61 pages) manuals (default: gagaa,agagg,ggaaa)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() {
    echo "bench: error: $*" >&2
    exit 1
}
say() { echo "bench: $*" >&2; }

lambda_dir="${BENCH_LAMBDA_DIR:-${CARGO_TARGET_DIR:-$root/target}/lambda}"
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$HOME/.cache/manuel/target-bench}"
release="$CARGO_TARGET_DIR/release"
only="${BENCH_ONLY:-lambdas,artifacts,routes,local,stream}"
wants() { [[ ",$only," == *",$1,"* ]]; }
nice_level="${BENCH_NICE:-10}"
features="manuel-manuals/lambda,manuel-query/lambda,manuel-usage/lambda,manuel-process-manual/lambda,manuel-error-processor/lambda,manuel-transcribe/lambda"
binaries=(manuel-manuals manuel-query manuel-usage manuel-process-manual manuel-error-processor manuel-transcribe)

# One JSON file per part; a part not measured in this run (BENCH_ONLY) keeps its last file.
parts="$root/bench/report/parts"
mkdir -p "$parts"
for part in lambdas artifacts routes local stream; do
    if wants "$part"; then rm -f "$parts/$part.json"; fi
done

command -v python3 >/dev/null || die "python3 not found"
if wants local; then
    # wrk (load) and pdfunite (the 329-page PDF), from Debian; installed once.
    missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v pdfunite >/dev/null || missing+=(poppler-utils)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} (apt-get)"
        apt-get install -y "${missing[@]}" >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; } ||
            die "could not install ${missing[*]}"
    fi
    "$root/scripts/setup-pdfium.sh"
    "$root/scripts/setup-models.sh"
    "$root/scripts/eval-manuals.sh" >/dev/null
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# The shipped configuration: the release profile, the Lambda binaries built with their
# features as scripts/lambda-build.sh builds them, manuel-local as `make run` builds it.
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
    bins=()
    for binary in "${binaries[@]}"; do bins+=(--bin "$binary"); done
    say "release builds in $CARGO_TARGET_DIR (slow the first time)"
    # Only what the parts asked for are built: the Lambda binaries and manuel-bench for the
    # lambdas and routes parts, manuel-local for the local part.
    if wants lambdas || wants routes || wants stream; then
        nice -n "$nice_level" cargo build --release --features "$features" "${bins[@]}" --bin manuel-bench
    fi
    if wants local; then nice -n "$nice_level" cargo build --release -p manuel-local; fi
fi

if [[ -n "${BENCH_ARM64:-}" ]]; then
    say "make build (arm64 artifacts) into $lambda_dir"
    CARGO_TARGET_DIR="$(dirname "$lambda_dir")" nice -n "$nice_level" "$root/scripts/lambda-build.sh"
fi

if wants routes; then
    say "4. warm in-process cost per route"
    "$release/manuel-bench" routes --iterations "${BENCH_ROUTE_ITERATIONS:-5000}" --out "$parts/routes.json"
fi

if wants lambdas || wants stream; then
    # Our own moto server (not scripts/moto.sh start, which would stop one a test run is using).
    "$root/scripts/moto.sh" install
    # The harness reads the test stack's names from template.yaml with SAM's translator.
    "$root/scripts/template-checks.sh" install
    moto_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$root/.tools/moto-venv/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 "$moto_port" \
        >"$parts/moto.log" 2>&1 &
    moto_pid=$!
    trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
    moto_url="http://127.0.0.1:$moto_port"
    for _ in $(seq 100); do
        python3 -c "import urllib.request; urllib.request.urlopen('$moto_url/moto-api/', timeout=1)" 2>/dev/null && break
        sleep 0.1
    done
    if wants lambdas; then
        say "1-2. cold starts and peak RSS of the Lambda binaries (moto on loopback)"
        "$release/manuel-bench" lambdas --bin-dir "$release" --moto "$moto_url" \
            --starts "${BENCH_STARTS:-20}" --warm "${BENCH_WARM:-1000}" --out "$parts/lambdas.json"
    fi
    if wants stream; then
        say "7. streamed answers through the streaming query function (about a minute)"
        "$release/manuel-bench" stream --bin-dir "$release" --moto "$moto_url" \
            --out "$parts/stream.json"
    fi
    kill "$moto_pid" 2>/dev/null || true
    trap - EXIT
fi

if wants artifacts; then
    python3 - "$lambda_dir" "$parts/artifacts.json" "${binaries[@]}" <<'EOF'
import json, os, subprocess, sys, datetime
lambda_dir, out, binaries = sys.argv[1], sys.argv[2], sys.argv[3:]
commit_time = int(subprocess.run(["git", "log", "-1", "--format=%ct"], capture_output=True, text=True).stdout.strip() or 0)
functions, missing, stale = [], [], []
for binary in binaries:
    zip_path = os.path.join(lambda_dir, binary, "bootstrap.zip")
    raw_path = os.path.join(lambda_dir, binary, "bootstrap")
    entry = {"function": binary, "zip": zip_path}
    if os.path.isfile(zip_path):
        mtime = os.path.getmtime(zip_path)
        entry["zip_bytes"] = os.path.getsize(zip_path)
        entry["built"] = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if mtime < commit_time:
            entry["note"] = "built before the last commit"
            stale.append(binary)
    else:
        entry["zip_bytes"] = None
        entry["note"] = "not built: run make build"
        missing.append(binary)
    entry["bootstrap_bytes"] = os.path.getsize(raw_path) if os.path.isfile(raw_path) else None
    functions.append(entry)
summary = f"From `{lambda_dir}` (`make build`: cargo-lambda, release, arm64)."
if missing:
    summary += f" Not built: {', '.join(missing)}; run `make build` (or `make bench BENCH_ARM64=1`)."
if stale:
    summary += f" Older than the last commit: {', '.join(stale)}; rebuild with `make build` for current sizes."
json.dump({"dir": lambda_dir, "summary": summary, "functions": functions}, open(out, "w"), indent=2)
print(f"bench: 3. artifacts: {summary}", file=sys.stderr)
EOF
fi

if wants local; then
    say "5-6. manuel-local (release) under load, ingestion and questions over ~1,000 pages"
    unset MANUEL_HOST MANUEL_PORT MANUEL_DATA_DIR MANUEL_MAX_UPLOAD_MB MANUEL_PUBLIC_URL \
        STAGE CORS_ALLOWED_ORIGINS CORS_ALLOW_CREDENTIALS IP_ALLOWLIST TRUSTED_PROXIES \
        HMAC_SIGNING_KEY MAX_REQUEST_BODY_BYTES REDIS_URL
    export MANUEL_PDFIUM_LIB="${MANUEL_PDFIUM_LIB:-$root/.tools/pdfium/libpdfium.so}"
    export MANUEL_EMBEDDING_MODEL="${MANUEL_EMBEDDING_MODEL:-$root/.tools/models/all-MiniLM-L6-v2-int8}"
    export MANUEL_ONNXRUNTIME="${MANUEL_ONNXRUNTIME:-$root/.tools/onnxruntime/libonnxruntime.so}"
    export RATE_LIMIT_PER_IP_PER_MINUTE=0 RATE_LIMIT_PER_USER_PER_MINUTE=0
    export DAILY_QUOTA_LIMIT=1000000000 MONTHLY_QUOTA_LIMIT=1000000000
    bin="$release/manuel-local"
    [[ -x "$bin" ]] || die "no manuel-local at $bin"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/manuel-bench.XXXXXX")"
    # shellcheck source=scripts/lib/local-server.sh
    source "$root/scripts/lib/local-server.sh"
    start_local_server bench-local
    token_bench="$("$bin" token --user bench --data-dir "$data_dir")"
    token_pages="$("$bin" token --user pages --data-dir "$data_dir")"
    ingest_args=()
    [[ -n "${BENCH_SKIP_INGEST:-}" ]] && ingest_args+=(--skip-ingest)
    python3 "$root/scripts/bench.py" local --api "$base_url" --token-bench "$token_bench" \
        --token-pages "$token_pages" --load-seconds "${BENCH_LOAD_SECONDS:-10}" \
        --server-pid "$server_pid" --out "$parts/local.json" "${ingest_args[@]}"
    stop_local_server_quietly() { trap - EXIT; ( stop_local_server ) || true; }
    stop_local_server_quietly
fi

python3 - "$parts/env.json" "$load_before" "$only" <<'EOF'
import json, os, platform, subprocess, sys, datetime
def run(*command):
    return subprocess.run(command, capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
os_name = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("PRETTY_NAME")), platform.system())
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "commit": run("git", "rev-parse", "--short", "HEAD"),
    "dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
    "cpus": os.cpu_count(), "cpu_model": cpu, "memory": f"{int(mem) / 1048576:.1f} GiB",
    "os": os_name, "rustc": run("rustc", "--version"),
    "load_before": sys.argv[2], "load_after": " ".join(open("/proc/loadavg").read().split()[:3]),
    "parts": sys.argv[3].split(","),
}, open(sys.argv[1], "w"), indent=2)
EOF

python3 "$root/scripts/bench.py" report --parts "$parts" --out-dir "$root/bench/report" \
    --benchmarks "$root/BENCHMARKS.md"
