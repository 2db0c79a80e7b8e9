#!/usr/bin/env bash
# macOS setup (Homebrew and pip only). Idempotent: safe to run again and again.
#   bash scripts/setup-macos.sh            # a remote receiver: `mimir receiver`, `mimir keys`, `mimir doctor`
#   bash scripts/setup-macos.sh rig        # everything (rig extra, tests, benchmarks)
# Never run by CI (Linux); see docs/platforms.md for what has and has not run on macOS.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
what="${1:-receiver}"
case "$what" in
    receiver) extras="" ;;
    rig) extras="[rig,test,bench]" ;;
    *) echo "usage: bash scripts/setup-macos.sh [receiver|rig]" >&2; exit 2 ;;
esac
if [ "$(uname -s)" != Darwin ]; then
    echo "setup-macos: this is $(uname -s); use scripts/setup.sh (Linux) or scripts/setup-windows.ps1" >&2
    exit 2
fi

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$(command -v "$candidate")"
        break
    fi
done
if ! command -v brew >/dev/null 2>&1 && { [ -z "$python" ] || [ "$what" = rig ]; }; then
    echo "setup-macos: Homebrew is needed (https://brew.sh), or install Python 3.11+ yourself for a receiver" >&2
    exit 1
fi
if [ -z "$python" ]; then
    echo "setup-macos: installing Python 3.12 with Homebrew" >&2
    brew install python@3.12
    python="$(brew --prefix python@3.12)/bin/python3.12"
fi
# sounddevice's and soundfile's macOS wheels carry PortAudio and libsndfile; a rig also wants libusb
# (PS3 Eye cameras) and ffmpeg (audio formats libsndfile cannot read).
if [ "$what" = rig ]; then
    for formula in libusb ffmpeg; do
        brew list --formula "$formula" >/dev/null 2>&1 || brew install "$formula"
    done
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.mimir-installed-$what"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extras"
    touch "$stamp"
fi
echo "setup-macos: ready ($what). Next: .venv/bin/mimir doctor" >&2
