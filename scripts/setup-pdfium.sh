#!/usr/bin/env bash
# Installs libpdfium.so for the local server.
#
# The library is taken from the PyPI wheel `pypdfium2` (it ships
# pypdfium2_raw/libpdfium.so, pdfium build 8149 for 5.15.2), fetched with the
# machine's ordinary pip client. No `unzip` needed: python3's zipfile extracts it.
#
# Usage: scripts/setup-pdfium.sh [DEST_DIR]
#   DEST_DIR defaults to <repo root>/.tools/pdfium
#   The wheel is kept in <repo root>/.tools/wheels/ so later runs don't download again.
#
# Idempotent: if DEST_DIR/libpdfium.so exists and DEST_DIR/VERSION says the
# pinned version, it exits 0 at once without printing anything.
set -euo pipefail

PYPDFIUM2_VERSION="5.15.2"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
dest="${1:-$repo_root/.tools/pdfium}"
wheel_cache="$repo_root/.tools/wheels"

# Fast path: already installed at the pinned version.
if [[ -f "$dest/libpdfium.so" && -f "$dest/VERSION" ]] &&
    [[ "$(tr -d '[:space:]' <"$dest/VERSION")" == "$PYPDFIUM2_VERSION" ]]; then
    exit 0
fi

die() {
    echo "setup-pdfium: error: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to run pip and to extract the wheel)"

mkdir -p "$dest" "$wheel_cache"
dest="$(cd "$dest" && pwd)"

tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/setup-pdfium.XXXXXX")"
cleanup() { rm -rf "$tmpdir"; }
trap cleanup EXIT

find_cached_wheel() {
    local w
    for w in "$wheel_cache"/pypdfium2-"$PYPDFIUM2_VERSION"-*.whl; do
        if [[ -f "$w" ]]; then
            printf '%s\n' "$w"
            return 0
        fi
    done
    return 1
}

if ! wheel="$(find_cached_wheel)"; then
    python3 -m pip --version >/dev/null 2>&1 ||
        die "pip is not available ('python3 -m pip --version' failed); install python3-pip"
    if ! python3 -m pip download --no-deps --only-binary=:all: \
        "pypdfium2==$PYPDFIUM2_VERSION" -d "$tmpdir/download" >"$tmpdir/pip.log" 2>&1; then
        cat "$tmpdir/pip.log" >&2
        die "pip could not download pypdfium2==$PYPDFIUM2_VERSION (see pip output above)"
    fi
    downloaded=""
    for w in "$tmpdir"/download/pypdfium2-"$PYPDFIUM2_VERSION"-*.whl; do
        [[ -f "$w" ]] && downloaded="$w" && break
    done
    [[ -n "$downloaded" ]] || die "pip succeeded but no pypdfium2-$PYPDFIUM2_VERSION wheel was found in its output dir"
    # Keep the wheel in the cache (atomic within the cache dir).
    cp "$downloaded" "$wheel_cache/.$(basename "$downloaded").tmp.$$"
    mv -f "$wheel_cache/.$(basename "$downloaded").tmp.$$" "$wheel_cache/$(basename "$downloaded")"
    wheel="$wheel_cache/$(basename "$downloaded")"
fi

# Extract pypdfium2_raw/libpdfium.so into a temp file next to the destination,
# then move it into place (atomic rename on the same filesystem).
tmp_so="$dest/.libpdfium.so.tmp.$$"
if ! python3 - "$wheel" "$tmp_so" <<'PY'; then
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
member = "pypdfium2_raw/libpdfium.so"
try:
    with zipfile.ZipFile(wheel) as zf:
        with zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
except KeyError:
    sys.exit(f"{member} not found in {wheel}")
except zipfile.BadZipFile as e:
    sys.exit(f"{wheel} is not a valid wheel: {e}")
with open(out, "rb") as f:
    if f.read(4) != b"\x7fELF":
        sys.exit(f"{member} in {wheel} is not an ELF shared library")
PY
    rm -f "$tmp_so"
    die "could not extract pypdfium2_raw/libpdfium.so from $wheel (delete it to force a new download)"
fi
chmod 0755 "$tmp_so"
mv -f "$tmp_so" "$dest/libpdfium.so"

tmp_ver="$dest/.VERSION.tmp.$$"
printf '%s\n' "$PYPDFIUM2_VERSION" >"$tmp_ver"
mv -f "$tmp_ver" "$dest/VERSION"

echo "pdfium (pypdfium2 $PYPDFIUM2_VERSION) installed: $dest/libpdfium.so"
