#!/usr/bin/env bash
# Puts the manuals of the answer-quality evaluation (eval/questions.json) into one directory.
#
# Usage: scripts/eval-manuals.sh [DEST_DIR]        (DEST_DIR defaults to <repo>/.tools/eval-manuals)
#
# What lands there, under the names the questions use (the names they are uploaded with):
#   gutenprint-users-manual.pdf  Debian package gutenprint-doc,
#                                usr/share/doc/gutenprint-doc/gutenprint-users-manual.pdf (73 pages)
#   avrdude.pdf                  Debian package avrdude-doc, usr/share/doc/avrdude/avrdude.pdf.gz,
#                                gunzipped (61 pages)
#   printer-manual.pdf           crates/local/tests/fixtures/ (6 pages)
#   coffee-machine.md            crates/local/tests/fixtures/ (Markdown, pages = sections)
#   router-notes.txt             crates/local/tests/fixtures/ (text, pages = sections)
#   lumen-dw45-dishwasher.txt    eval/manuals/ (a manual written for the evaluation; 9 pages
#                                separated by form feeds)
#   en-eyesj.pdf                 Debian package expeyes-doc-en (ExpEYES Junior user manual, 65 pages)
#   freedombox-manual.pdf        Debian package freedombox-doc-en (303 pages)
#   nut-user-manual.pdf          Debian package nut-doc, usr/share/doc/nut-doc/pdf/user-manual.pdf
#                                (Network UPS Tools, 135 pages)
#   amc-user-manual.pdf          Debian package auto-multiple-choice-doc-pdf,
#                                auto-multiple-choice.en.pdf (101 pages)
#
# The Debian packages are fetched with `apt-get download` (no root needed; `apt-get update`,
# which needs root, is run only when the download fails) and unpacked with `dpkg-deb -x` in a
# temporary directory. Idempotent: a PDF already in DEST_DIR is not fetched again, and the copied
# files are only rewritten when they differ.
#
# The questions' page labels were checked against the PDFs with the SHA-256s below (Debian 12
# "bookworm": gutenprint-doc 5.3.4.20220624T01008808d602-1, avrdude-doc 7.1+dfsg-3,
# expeyes-doc-en 4.3-3, freedombox-doc-en 23.6.2+deb12u2, nut-doc 2.8.0-7,
# auto-multiple-choice-doc-pdf 1.6.0-1). Another
# version of a package may move text to other pages: the script then warns, and the labels of
# that manual may need checking again (pdftotext -f N -l N FILE -).
set -euo pipefail

GUTENPRINT_SHA256="e9f4a85ecce576c1dcbb9236e710d0e1256c0f5642bb06ad91251b15410194d8"
AVRDUDE_SHA256="da2b3288f8310ecd4b53c14308f25a2acac96e6adf7e24e5769819de221118f3"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
dest="${1:-$repo_root/.tools/eval-manuals}"

die() {
    echo "eval-manuals: error: $*" >&2
    exit 1
}
say() { echo "eval-manuals: $*" >&2; }

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

tmp=""
cleanup() { [[ -z "$tmp" ]] || rm -rf "$tmp"; }
trap cleanup EXIT

# Copies SRC to DEST_DIR/NAME unless an identical file is already there.
install_file() {
    local src="$1" name="$2"
    if [[ -f "$dest/$name" ]] && cmp -s "$src" "$dest/$name"; then
        return 0
    fi
    cp "$src" "$dest/$name.partial"
    mv "$dest/$name.partial" "$dest/$name"
    say "wrote $dest/$name"
}

check_sha256() {
    local name="$1" expected="$2" actual
    actual="$(sha256sum "$dest/$name" | cut -d' ' -f1)"
    if [[ "$actual" != "$expected" ]]; then
        say "warning: $name has SHA-256 $actual, not the $expected the page labels were checked" \
            "against; another package version may have moved text to other pages"
    fi
}

# --- the Debian documentation packages ---------------------------------------------------------
# name|package|path in the package (.gz is gunzipped)|SHA-256 the page labels were checked against
debian_manuals=(
    "gutenprint-users-manual.pdf|gutenprint-doc|usr/share/doc/gutenprint-doc/gutenprint-users-manual.pdf|$GUTENPRINT_SHA256"
    "avrdude.pdf|avrdude-doc|usr/share/doc/avrdude/avrdude.pdf.gz|$AVRDUDE_SHA256"
    "en-eyesj.pdf|expeyes-doc-en|usr/share/expeyes/doc/en-eyesj.pdf|166ade592cd14a3c527a7d1bf63e0ce092c79a085e95ea103ac7ecb05ea4277d"
    "freedombox-manual.pdf|freedombox-doc-en|usr/share/freedombox/manual/en/freedombox-manual.pdf|f528df81ee68bdcadb203d490765f8cc6e1027e745850351cec4d56ae8e1455d"
    "nut-user-manual.pdf|nut-doc|usr/share/doc/nut-doc/pdf/user-manual.pdf|f604fa3ab839872da646c8aa2ff4870b88e9e001611f711d8852d937f02c512f"
    "amc-user-manual.pdf|auto-multiple-choice-doc-pdf|usr/share/doc/auto-multiple-choice/auto-multiple-choice.en.pdf|dc69b1bcd7b2b601ae05d84cd52f155d12eb8d340407c7e2eb469ce4647ef0f8"
)
missing_packages=()
for entry in "${debian_manuals[@]}"; do
    IFS='|' read -r name package _ _ <<<"$entry"
    [[ -s "$dest/$name" ]] || missing_packages+=("$package")
done
if ((${#missing_packages[@]} > 0)); then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: fetch the Debian packages ${missing_packages[*]} by hand and put their manuals into $dest (see the list in this script)"
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian package dpkg)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/eval-manuals.XXXXXX")"
    # apt-get download as root drops to the _apt user, which must be able to write here.
    chmod 0777 "$tmp"
    download() { (cd "$tmp" && apt-get download -q "${missing_packages[@]}"); }
    if ! download >"$tmp/apt.log" 2>&1; then
        say "apt-get download failed; running apt-get update and trying again"
        if [[ "$(id -u)" -eq 0 ]]; then
            apt-get update -q >>"$tmp/apt.log" 2>&1 || true
        fi
        download >>"$tmp/apt.log" 2>&1 || {
            cat "$tmp/apt.log" >&2
            [[ "$(id -u)" -eq 0 ]] || say "hint: the package lists may be missing or stale; run 'sudo apt-get update' and try again"
            die "apt-get download ${missing_packages[*]} failed"
        }
    fi
    mkdir -p "$tmp/root"
    for package in "${missing_packages[@]}"; do
        debs=("$tmp/${package}_"*.deb)
        [[ -f "${debs[0]}" ]] || die "apt-get download left no ${package}_*.deb"
        say "unpacking $(basename "${debs[0]}")"
        dpkg-deb -x "${debs[0]}" "$tmp/root"
    done
    for entry in "${debian_manuals[@]}"; do
        IFS='|' read -r name package path _ <<<"$entry"
        [[ -s "$dest/$name" ]] && continue
        [[ -f "$tmp/root/$path" ]] || die "$package has no $path"
        if [[ "$path" == *.gz ]]; then
            gunzip -c "$tmp/root/$path" >"$tmp/$name"
            install_file "$tmp/$name" "$name"
        else
            install_file "$tmp/root/$path" "$name"
        fi
    done
fi
for entry in "${debian_manuals[@]}"; do
    IFS='|' read -r name _ _ sha256 <<<"$entry"
    check_sha256 "$name" "$sha256"
done

# --- the repository's own manuals --------------------------------------------------------------
fixtures="$repo_root/crates/local/tests/fixtures"
for name in printer-manual.pdf coffee-machine.md router-notes.txt; do
    [[ -f "$fixtures/$name" ]] || die "missing fixture $fixtures/$name"
    install_file "$fixtures/$name" "$name"
done
for file in "$repo_root"/eval/manuals/*; do
    [[ -f "$file" ]] || continue
    install_file "$file" "$(basename "$file")"
done

names=("$dest"/*)
say "manuals in $dest: ${names[*]##*/}"
