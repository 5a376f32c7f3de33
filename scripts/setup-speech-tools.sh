#!/usr/bin/env bash
# Installs espeak-ng and sox, which the spoken-question tests use to record questions
# (crates/local/tests/speech_e2e.rs), from Debian's packages. Idempotent: exits at once when
# both are on PATH.
set -euo pipefail

if command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "setup-speech-tools: error: espeak-ng and sox are missing; install them (apt-get install espeak-ng sox)" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || {
    echo "setup-speech-tools: error: no apt-get here; install espeak-ng and sox by hand" >&2
    exit 1
}
echo "setup-speech-tools: installing espeak-ng and sox" >&2
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get install -y -q --no-install-recommends espeak-ng sox >/dev/null ||
    { "${run[@]}" apt-get update -q >/dev/null && "${run[@]}" apt-get install -y -q --no-install-recommends espeak-ng sox >/dev/null; }
