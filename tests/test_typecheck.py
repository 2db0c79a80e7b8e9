"""The whole package type-checks for Linux, macOS and Windows (mypy ``--platform``), against a ratchet.

mypy reads ``sys.platform`` checks, so ``--platform win32`` finds every call
that does not exist on Windows (``os.sched_yield``, ``select.poll``,
``fcntl``...) in code that Windows would run; ``--platform darwin`` the same
for macOS. Configuration: ``[tool.mypy]`` in pyproject.toml (no ignored
modules of our own; only third-party packages that ship no types and have no
stub package are not analysed).

The goal is zero errors on every platform. The errors that existed when this
check was introduced are listed in ``tests/mypy-baseline.txt`` (platform,
file, error code, message; no line numbers): this test fails on any error
that is not listed (a new one) **and** on any listed error that no longer
occurs (fixed: delete its line, so the list only shrinks). The modules of
:data:`CLEAN` may have no entry at all. Regenerate after fixing many at
once: ``.venv/bin/python tests/test_typecheck.py --write-baseline``.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).with_name("mypy-baseline.txt")
PLATFORMS = ("linux", "darwin", "win32")
# Modules that must stay at zero errors on every platform (the seam, the receiver's platform code, and every module
# driven to zero since: once here, an error in it is never listed in the baseline).
CLEAN = ("ringbuf/platform/", "ringbuf/process.py", "ringbuf/segment.py", "ringbuf/fence.py", "ringbuf/layout.py",
         "mimir/process_control.py", "mimir/signals.py", "mimir/doctor.py", "mimir_cli/main.py", "mimir_cli/app.py",
         "mimir/net/", "ringbuf/ring.py",
         "workers/audio/", "workers/camera/", "mimir/consumer.py", "mimir/consumer_gpu.py", "mimir/gpu/",
         "bench/__init__.py", "bench/audio.py", "bench/cameras.py", "bench/cli.py", "bench/common.py",
         "bench/consumer.py", "bench/doorbells.py", "bench/gpu.py", "bench/pipeline.py", "bench/ps3eye_parse.py",
         "bench/reservoir.py", "bench/rings.py", "bench/snapshot.py", "bench/take.py", "mimir/reservoir/",
         "mimir/topology.py", "mimir/timebase.py", "mimir/config.py", "mimir/retention.py", "mimir/supervisor/",
         "mimir/sync/", "workers/features/", "mimir/take/", "mimir/snapshot/", "bench/receivers.py")
_LINE = re.compile(r"^(?P<path>[^:]+):\d+: error: (?P<message>.*?)  \[(?P<code>[a-z0-9-]+)\]$")

Error = tuple[str, str, str, str]  # platform, path, code, message


def run_mypy(platform: str) -> list[Error]:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", platform, "--no-error-summary", "--show-error-codes",
         "--no-pretty", "--cache-dir", str(REPO / ".mypy_cache" / platform)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    if out.returncode not in (0, 1) or "error: " in out.stderr:
        raise RuntimeError(f"mypy --platform {platform} failed to run ({out.returncode}):\n{out.stderr[-4000:]}")
    errors = []
    for line in out.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            errors.append((platform, m["path"], m["code"], m["message"]))
        elif ": error: " in line:
            raise AssertionError(f"unparsed mypy line: {line}")
    return errors


def run_all() -> list[Error]:
    with ThreadPoolExecutor(len(PLATFORMS)) as pool:
        return sorted(e for errors in pool.map(run_mypy, PLATFORMS) for e in errors)


def read_baseline() -> list[Error]:
    rows = []
    for line in BASELINE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            platform, path, code, message = line.split("\t", 3)
            rows.append((platform, path, code, message))
    return rows


def write_baseline(errors: list[Error]) -> None:
    header = ("# mypy errors that existed when the per-platform check began (tests/test_typecheck.py).\n"
              "# platform<TAB>file<TAB>code<TAB>message. Only ever delete lines: fix, then delete.\n")
    BASELINE.write_text(header + "".join("\t".join(e) + "\n" for e in sorted(errors)), encoding="utf-8")


def _show(counter: collections.Counter) -> str:
    return "\n".join(f"  {n}x {p} {path}: [{code}] {msg}" for (p, path, code, msg), n in sorted(counter.items()))


@pytest.mark.slow
def test_every_platform_type_checks_against_the_ratchet():
    found = collections.Counter(run_all())
    listed = collections.Counter(read_baseline())
    new = found - listed
    fixed = listed - found
    assert not new, f"new type errors (fix them; never add them to the baseline):\n{_show(new)}"
    assert not fixed, f"errors fixed: delete these lines from {BASELINE.name}:\n{_show(fixed)}"


def test_the_seam_and_the_receivers_platform_code_have_no_listed_errors():
    dirty = [e for e in read_baseline() if e[1].startswith(CLEAN)]
    assert not dirty, dirty


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-baseline"]:
        raise SystemExit("usage: python tests/test_typecheck.py --write-baseline")
    write_baseline(run_all())
    print(f"wrote {BASELINE}")
