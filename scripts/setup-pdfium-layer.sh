#!/usr/bin/env bash
# Puts libpdfium.so for Lambda (arm64, Amazon Linux 2023) where template.yaml's PdfiumLayer
# takes it from: .tools/pdfium-layer/lib/libpdfium.so (Lambda unpacks a layer under /opt, so the
# manuals function loads /opt/lib/libpdfium.so).
#
# The library comes from the PyPI wheel `pypdfium2` built for manylinux aarch64 (the same
# version scripts/setup-pdfium.sh installs for local mode), fetched with the machine's ordinary
# pip client; the wheel is kept in .tools/wheels/. Idempotent: exits at once when the pinned
# version is in place.
set -euo pipefail

PYPDFIUM2_VERSION="5.15.2"
PLATFORM="manylinux_2_17_aarch64"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/pdfium-layer/lib"
wheels="$root/.tools/wheels"
version_file="$root/.tools/pdfium-layer/VERSION"

if [[ -f "$dest/libpdfium.so" && -f "$version_file" ]] &&
    [[ "$(tr -d '[:space:]' <"$version_file")" == "$PYPDFIUM2_VERSION-$PLATFORM" ]]; then
    exit 0
fi
die() {
    echo "setup-pdfium-layer: error: $*" >&2
    exit 1
}
mkdir -p "$dest" "$wheels"
wheel=""
for w in "$wheels"/pypdfium2-"$PYPDFIUM2_VERSION"-*"$PLATFORM"*.whl; do
    [[ -f "$w" ]] && wheel="$w" && break
done
if [[ -z "$wheel" ]]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$PLATFORM" \
        "pypdfium2==$PYPDFIUM2_VERSION" -d "$wheels" ||
        die "pip could not download the $PLATFORM wheel of pypdfium2==$PYPDFIUM2_VERSION"
    for w in "$wheels"/pypdfium2-"$PYPDFIUM2_VERSION"-*"$PLATFORM"*.whl; do
        [[ -f "$w" ]] && wheel="$w" && break
    done
    [[ -n "$wheel" ]] || die "no $PLATFORM wheel of pypdfium2 $PYPDFIUM2_VERSION after pip download"
fi
python3 - "$wheel" "$dest/.libpdfium.so.tmp" <<'PY' || die "could not extract libpdfium.so from $wheel"
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf, zf.open("pypdfium2_raw/libpdfium.so") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
with open(out, "rb") as f:
    header = f.read(20)
# An ELF shared library for AArch64 (e_machine 0xB7 at offset 18, little-endian).
if header[:4] != b"\x7fELF" or header[18:20] != b"\xb7\x00":
    sys.exit("pypdfium2_raw/libpdfium.so is not an AArch64 ELF library")
PY
chmod 0755 "$dest/.libpdfium.so.tmp"
mv -f "$dest/.libpdfium.so.tmp" "$dest/libpdfium.so"
printf '%s\n' "$PYPDFIUM2_VERSION-$PLATFORM" >"$version_file"
echo "pdfium layer (pypdfium2 $PYPDFIUM2_VERSION, $PLATFORM): $dest/libpdfium.so"
