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
#
# The two Debian packages are fetched with `apt-get download` (no root needed; `apt-get update`,
# which needs root, is run only when the download fails) and unpacked with `dpkg-deb -x` in a
# temporary directory. Idempotent: a PDF already in DEST_DIR is not fetched again, and the copied
# files are only rewritten when they differ.
#
# The questions' page labels were checked against the PDFs with the SHA-256 below (Debian 12
# "bookworm": gutenprint-doc 5.3.4.20220624T01008808d602-1, avrdude-doc 7.1+dfsg-3). Another
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
if [[ ! -s "$dest/gutenprint-users-manual.pdf" || ! -s "$dest/avrdude.pdf" ]]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: fetch the Debian packages gutenprint-doc and avrdude-doc by hand and put gutenprint-users-manual.pdf and avrdude.pdf (gunzipped) into $dest"
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian package dpkg)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/eval-manuals.XXXXXX")"
    # apt-get download as root drops to the _apt user, which must be able to write here.
    chmod 0777 "$tmp"
    download() { (cd "$tmp" && apt-get download -q gutenprint-doc avrdude-doc); }
    if ! download >"$tmp/apt.log" 2>&1; then
        say "apt-get download failed; running apt-get update and trying again"
        if [[ "$(id -u)" -eq 0 ]]; then
            apt-get update -q >>"$tmp/apt.log" 2>&1 || true
        fi
        download >>"$tmp/apt.log" 2>&1 || {
            cat "$tmp/apt.log" >&2
            [[ "$(id -u)" -eq 0 ]] || say "hint: the package lists may be missing or stale; run 'sudo apt-get update' and try again"
            die "apt-get download gutenprint-doc avrdude-doc failed"
        }
    fi
    mkdir -p "$tmp/root"
    for deb in "$tmp"/gutenprint-doc_*.deb "$tmp"/avrdude-doc_*.deb; do
        [[ -f "$deb" ]] || die "apt-get download left no $(basename "$deb")"
        say "unpacking $(basename "$deb")"
        dpkg-deb -x "$deb" "$tmp/root"
    done
    gutenprint="$tmp/root/usr/share/doc/gutenprint-doc/gutenprint-users-manual.pdf"
    avrdude_gz="$tmp/root/usr/share/doc/avrdude/avrdude.pdf.gz"
    [[ -f "$gutenprint" ]] || die "gutenprint-doc has no usr/share/doc/gutenprint-doc/gutenprint-users-manual.pdf"
    [[ -f "$avrdude_gz" ]] || die "avrdude-doc has no usr/share/doc/avrdude/avrdude.pdf.gz"
    install_file "$gutenprint" gutenprint-users-manual.pdf
    gunzip -c "$avrdude_gz" >"$tmp/avrdude.pdf"
    install_file "$tmp/avrdude.pdf" avrdude.pdf
fi
check_sha256 gutenprint-users-manual.pdf "$GUTENPRINT_SHA256"
check_sha256 avrdude.pdf "$AVRDUDE_SHA256"

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
