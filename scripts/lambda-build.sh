#!/usr/bin/env bash
# Builds the six Lambda functions for arm64 (provided.al2023) with cargo-lambda:
#   target/lambda/<binary>/bootstrap and target/lambda/<binary>/bootstrap.zip
# Installs cargo-lambda (with zig) into .tools/lambda-venv and the aarch64 target once.
set -euo pipefail

CARGO_LAMBDA_VERSION="1.9.2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/lambda-venv"

if ! "$venv/bin/cargo-lambda" --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
    echo "lambda-build: installing cargo-lambda $CARGO_LAMBDA_VERSION into $venv" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    echo "lambda-build: adding the aarch64-unknown-linux-gnu target (a download)" >&2
    rustup target add aarch64-unknown-linux-gnu || {
        echo "lambda-build: could not add the aarch64 target; arm64 builds need it" >&2
        exit 1
    }
fi
# cargo-lambda finds zig through the python3 first on PATH.
export PATH="$venv/bin:$PATH"
features="manuel-manuals/lambda,manuel-query/lambda,manuel-usage/lambda,manuel-process-manual/lambda,manuel-error-processor/lambda"
binaries=(manuel-manuals manuel-query manuel-usage manuel-process-manual manuel-error-processor)
if [[ -d "$root/functions/transcribe" ]]; then
    features="$features,manuel-transcribe/lambda"
    binaries+=(manuel-transcribe)
fi
args=()
for binary in "${binaries[@]}"; do args+=(--bin "$binary"); done
cd "$root"
cargo lambda build --release --arm64 --features "$features" "${args[@]}" --output-format zip
cargo lambda build --release --arm64 --features "$features" "${args[@]}"
target="${CARGO_TARGET_DIR:-$root/target}"
for binary in "${binaries[@]}"; do
    ls -l "$target/lambda/$binary/bootstrap" "$target/lambda/$binary/bootstrap.zip"
done
