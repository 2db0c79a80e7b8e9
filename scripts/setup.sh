#!/usr/bin/env bash
# The only install logic in Mimir. Idempotent: safe to run again and again.
# On a fresh Debian machine as root it installs the system libraries, creates
# .venv at the repository root and installs Mimir with its test and bench extras.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if [ "$(uname -s)" = Darwin ]; then  # macOS: Homebrew and pip (scripts/setup-macos.sh), everything installed
    exec bash "$here/scripts/setup-macos.sh" rig
fi

apt_packages=(libportaudio2 libsndfile1 libusb-1.0-0 jackd2 ffmpeg)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing system packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks whether to enable realtime scheduling; answer once, non-interactively.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.mimir-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test,bench]"
    touch "$stamp"
fi
