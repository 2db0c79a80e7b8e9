"""`mimir doctor` says what this platform does for each duty of the seam, and checks what it can."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MIMIR = str(Path(sys.executable).with_name("mimir"))


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_doctor_reports_the_platforms_limits_and_checks(platform, tmp_path):
    env = dict(os.environ, MIMIR_PLATFORM=platform, MIMIR_MACOS_RULES_LOG=str(tmp_path / "violations.log"))
    out = subprocess.run([MIMIR, "doctor", "--json", "--rig", "nonexistent_rig"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    checks = {c["name"].strip(): c for c in json.loads(out.stdout)["checks"]}
    for duty in ("names", "shared memory", "cleanup", "discovery", "doorbells", "locks", "parent death", "stop",
                 "priority"):
        assert checks[duty]["detail"], duty
    if platform == "linux":
        assert checks["platform"]["detail"].startswith("linux;") and "/dev/shm" in checks
        assert "PR_SET_PDEATHSIG" in checks["parent death"]["detail"]
    else:
        assert "macOS rules emulated" in checks["platform"]["detail"]
        assert "31 characters" in checks["names"]["detail"] and checks["object registry"]["ok"]
        assert "watchdog" in checks["parent death"]["detail"]
        log = tmp_path / "violations.log"
        assert not log.exists() or log.read_text() == ""  # doctor itself reads no /proc under macOS rules
