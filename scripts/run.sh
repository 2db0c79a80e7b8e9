#!/usr/bin/env bash
# Set up (idempotent) and run Mimir's main job on its embedded default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup.sh"
cd "$here"
exec .venv/bin/mimir bench rings --quick "$@"
