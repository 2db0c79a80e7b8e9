"""``MIMIR_PLATFORM=darwin`` on Linux forbids Mimir code what macOS lacks, in every process, and nothing else.

Each probe runs in a fresh interpreter (the rules are installed at import
and cannot be removed). A probe's code is compiled under a file name inside
a Mimir package, so the rules see it as Mimir code; the same code from a
test file, and psutil's own /proc reads, are allowed.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ringbuf

REPO = Path(ringbuf.__file__).resolve().parents[1]
AS_MIMIR = str(REPO / "mimir" / "_macos_rules_probe.py")

PROBE = textwrap.dedent("""
    import json, sys
    import ringbuf.platform as platform
    results = {"platform": platform.PLATFORM.name, "emulated": platform.EMULATED}
    for label, code, filename in json.loads(sys.argv[1]):
        try:
            exec(compile(code, filename, "exec"), {})
            results[label] = "ok"
        except BaseException as exc:
            results[label] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(results))
""")


def probe(tmp_path: Path, cases: list[tuple[str, str, str]], platform: str | None = "darwin") -> tuple[dict, str]:
    log = tmp_path / "violations.log"
    env = {k: v for k, v in os.environ.items() if k not in ("MIMIR_PLATFORM", "MIMIR_MACOS_RULES_LOG")}
    env["MIMIR_MACOS_RULES_LOG"] = str(log)
    if platform:
        env["MIMIR_PLATFORM"] = platform
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), log.read_text() if log.exists() else ""


PROC_READS = [
    ("open", "open('/proc/self/stat').read()"),
    ("listdir", "import os; os.listdir('/proc/self')"),
    ("pathlib", "from pathlib import Path; Path('/proc/self/status').read_text()"),
    ("dev_shm", "import os; os.listdir('/dev/shm')"),
    ("sys", "open('/sys/kernel/mm/transparent_hugepage/enabled').read()"),
]


def test_mimir_code_cannot_read_proc_sys_or_dev_shm(tmp_path):
    results, log = probe(tmp_path, [(label, code, AS_MIMIR) for label, code in PROC_READS])
    assert results["platform"] == "darwin" and results["emulated"] is True
    for label, _ in PROC_READS:
        assert results[label].startswith("_NoSuchPathOnMacOS: [Errno 2] macOS rules:"), (label, results[label])
    assert len(log.splitlines()) == len(PROC_READS)
    assert all(line.endswith("_macos_rules_probe.py:1") for line in log.splitlines())


def test_tests_and_psutil_may_read_proc_and_mimirs_process_facts_work(tmp_path):
    cases = [(label, code, str(Path(__file__))) for label, code in PROC_READS[:2]]
    cases += [
        ("psutil", "import psutil; p = psutil.Process(); p.create_time(); p.cpu_times(); p.status()", AS_MIMIR),
        ("identity", "from ringbuf import process; assert process.identity() > 0; assert process.alive(1)", AS_MIMIR),
    ]
    results, log = probe(tmp_path, cases)
    assert {k: v for k, v in results.items() if k not in ("platform", "emulated")} == {
        "open": "ok", "listdir": "ok", "psutil": "ok", "identity": "ok"}
    assert log == ""


def test_prctl_and_timed_semaphore_waits_are_refused(tmp_path):
    cases = [
        ("prctl", "import ctypes; ctypes.CDLL(None).prctl", AS_MIMIR),
        ("timedwait", "import ctypes; ctypes.CDLL(None).sem_timedwait", AS_MIMIR),
        ("semaphore", textwrap.dedent("""
            import posix_ipc
            s = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=1)
            try:
                s.acquire(0)      # non-blocking: exists on macOS
                s.release()
                s.acquire(0.1)    # a timed wait: macOS would wait forever
            finally:
                s.unlink()
        """), AS_MIMIR),
        ("timeout_flag", "import posix_ipc; assert posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED is False", AS_MIMIR),
    ]
    results, log = probe(tmp_path, cases)
    assert results["prctl"].startswith("_NoSuchSymbolOnMacOS: macOS rules: C function prctl")
    assert results["timedwait"].startswith("_NoSuchSymbolOnMacOS: macOS rules: C function sem_timedwait")
    assert results["semaphore"].startswith("MacOSRuleViolation: macOS rules: posix_ipc.Semaphore.acquire(timeout=0.1)")
    assert results["timeout_flag"] == "ok"
    assert len(log.splitlines()) == 3


def test_linux_rules_enforce_nothing(tmp_path):
    results, log = probe(tmp_path, [("open", PROC_READS[0][1], AS_MIMIR),
                                    ("prctl", "import ctypes; ctypes.CDLL(None).prctl", AS_MIMIR)], platform="linux")
    assert results == {"platform": "linux", "emulated": False, "open": "ok", "prctl": "ok"}
    assert log == ""


def test_an_unknown_platform_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, MIMIR_PLATFORM="beos")
    out = subprocess.run([sys.executable, "-c", "import ringbuf"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr == "error: MIMIR_PLATFORM='beos': use one of linux, darwin, windows\n"


@pytest.mark.parametrize("name", ["windows"])
def test_windows_rules_cannot_be_emulated_here(tmp_path, name):
    env = dict(os.environ, MIMIR_PLATFORM=name)
    out = subprocess.run([sys.executable, "-c", "import ringbuf"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "named mappings exist on Windows only" in out.stderr
