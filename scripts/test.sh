#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. CI runs exactly this.
# With no arguments: the whole suite (mypy for linux, darwin and win32 included: tests/test_typecheck.py),
# then the shared-memory suites a second time under macOS's rules (MIMIR_PLATFORM=darwin: 31-character
# names, marker-file discovery, and no /proc, prctl or timed semaphore waits in any Mimir process).
# With arguments: pytest with those arguments, once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup.sh"
cd "$here"
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
echo "== second pass under macOS rules (MIMIR_PLATFORM=darwin)"
MIMIR_PLATFORM=darwin exec .venv/bin/python -m pytest -q tests/ringbuf tests/mimir/reservoir tests/mimir/supervisor \
    tests/mimir/test_process_control.py tests/mimir/test_doctor.py
