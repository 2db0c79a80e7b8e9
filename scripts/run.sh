#!/usr/bin/env bash
# Set up (idempotent), then run the main job: the supervisor on its embedded default rig
# (six synthetic 640x480@60 cameras, 8-channel 48 kHz synthetic audio carrying the active witness).
# With no arguments it runs for 30 s and prints the final status; pass `--duration S`, or
# any `mimir-supervisor start` option (e.g. `--config rig.toml`), to change that.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup.sh"
cd "$here"
if [ $# -eq 0 ]; then
    set -- --duration 30
fi
exec .venv/bin/mimir-supervisor start "$@"
