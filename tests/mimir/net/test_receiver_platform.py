"""The receiver is the same code on every OS: it imports nothing of the rig, keeps keys owner-only by the OS's own
rule (mode bits here, an access list on Windows), and wakes its network thread without a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from mimir.net import RemoteListener, winacl
from mimir.net import keys as keymod
from mimir.net.keys import KeyFileError, load_secret_key, write_keypair
from mimir.net.relay import LoopbackRelay
from mimir.net.sender import Sender
from mimir.sync.trials import Condition

# What a receiver-only install lacks (the `rig` extra, or a Windows machine: no posix_ipc wheel there).
RIG_ONLY = ("posix_ipc", "ringbuf", "psutil", "cv2", "usb", "matplotlib", "av", "pyxdf",
            "mimir.reservoir", "mimir.supervisor", "mimir.take", "mimir.gpu", "workers", "bench")

RECEIVER_ONLY = textwrap.dedent(f"""
    import importlib.abc, json, os, runpy, sys
    BLOCKED = {RIG_ONLY!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
                raise ModuleNotFoundError(f"No module named {{name!r}} (a receiver-only machine)")

    sys.meta_path.insert(0, NotInstalled())
    try:
        import posix_ipc
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the blocker does not work")
    entry, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    try:
        if entry == "mimir":
            from mimir_cli.main import main
            main()
        else:
            runpy.run_module("mimir.net", run_name="__main__", alter_sys=True)
    finally:
        loaded = sorted(m for m in sys.modules if m.startswith(("mimir", "ringbuf", "workers", "bench")))
        with open(os.environ["LOADED_MODULES"], "w") as f:
            json.dump(loaded, f)
""")


def _receiver_only(entry: str, *args: str, tmp_path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, LOADED_MODULES=str(tmp_path / f"loaded-{entry}.json"))
    return subprocess.run([sys.executable, "-c", RECEIVER_ONLY, entry, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["mimir", "python -m mimir.net"])
def test_the_receiver_runs_where_nothing_of_the_rig_is_installed(net, tmp_path, entry):
    w = net.witness("w", Condition("w", "", ppm=40.0, snr_db=20.0, seconds=8.0), seed=86)
    keygen = _receiver_only(entry, "keys", "generate", "--out", tmp_path / "raven", tmp_path=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    cfg = net.config({"raven": "trusted-evidence"}, keys={"raven": "raven"})
    # the config names keydir/raven.key: use this test's freshly generated key instead
    cfg.sources[0].public_key = keygen.stdout.strip()
    with RemoteListener(cfg, "t-noring") as listener:
        result = {}

        def run() -> None:
            result["proc"] = _receiver_only(
                entry, "receiver", "--source-id", "raven", "--connect", listener.endpoint, "--file", w.path, "--fast",
                "--key", tmp_path / "raven.key_secret", "--server-key", net.keydir / "server.key", "--json",
                tmp_path=tmp_path)

        t = threading.Thread(target=run)
        t.start()
        assert net.pump(listener, 90.0, until=lambda: not t.is_alive())
        t.join()
        proc = result["proc"]
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        source = listener.source("raven")
        assert summary["messages_total"] > 0 and source.counters.accepted == summary["messages_total"]
        assert source.clock_fit is not None and source.clock_fit.locked
    loaded = json.loads((tmp_path / f"loaded-{entry}.json").read_text())
    assert "mimir.net.receiver" in loaded and "mimir.net.listener" not in loaded
    assert not [m for m in loaded if m.startswith(RIG_ONLY)]


# ---- keys: owner-only by the OS's rule ---------------------------------------------------------------------------
def test_windows_access_list_policy():
    user = "S-1-5-21-1-2-3-1001"
    own = winacl.Ace(0, 0, 0x1F01FF, user)
    system = winacl.Ace(0, 0, 0x1F01FF, winacl.SYSTEM_SID)
    admins = winacl.Ace(0, 0, 0x1F01FF, winacl.ADMINISTRATORS_SID)
    users_read = winacl.Ace(0, 0, 0x120089, "S-1-5-32-545", "BUILTIN\\Users")
    everyone_generic = winacl.Ace(0, 0, winacl.GENERIC_READ, "S-1-1-0", "Everyone")
    assert winacl.foreign_readers([own, system, admins], user) == []
    assert winacl.foreign_readers([own, users_read], user) == ["BUILTIN\\Users"]
    assert winacl.foreign_readers([own, everyone_generic], user) == ["Everyone"]
    assert winacl.foreign_readers([own, winacl.Ace(1, 0, 0x1F01FF, "S-1-1-0")], user) == []  # a deny entry
    assert winacl.foreign_readers([own, winacl.Ace(0, winacl.INHERIT_ONLY_ACE, 0x1F01FF, "S-1-1-0")], user) == []
    assert winacl.foreign_readers([own, winacl.Ace(0, 0, 0x100000, "S-1-1-0")], user) == []  # SYNCHRONIZE only
    assert winacl.foreign_readers(None, user) == ["everyone (the file has no access list)"]


def test_on_windows_a_key_is_restricted_before_the_secret_is_written_and_checked_by_its_access_list(
        tmp_path, monkeypatch):
    restricted = []
    monkeypatch.setattr(keymod, "WINDOWS", True)
    monkeypatch.setattr(winacl, "restrict_to_owner", lambda path: restricted.append((path, path.read_bytes())))
    aces = {"list": [winacl.Ace(0, 0, 0x1F01FF, "S-1-5-21-9")]}
    monkeypatch.setattr(winacl, "_read_aces", lambda path: (aces["list"], "S-1-5-21-9"))
    public, secret = write_keypair(tmp_path / "laptop")
    assert restricted == [(secret, b"")]  # only the secret file, and while it was still empty
    os.chmod(secret, 0o644)  # mode bits mean nothing on Windows: the access list decides
    assert load_secret_key(secret).public
    aces["list"].append(winacl.Ace(0, 0, 0x120089, "S-1-5-32-545", "BUILTIN\\Users"))
    with pytest.raises(KeyFileError, match=r"readable by BUILTIN\\Users; run `mimir keys generate --force`"):
        load_secret_key(secret)


def test_on_posix_a_group_readable_key_is_refused(tmp_path):
    _, secret = write_keypair(tmp_path / "phone")
    assert load_secret_key(secret).secret
    os.chmod(secret, 0o640)
    with pytest.raises(KeyFileError, match="readable by others .mode 640.; run `chmod 600"):
        load_secret_key(secret)


# ---- wake-ups without a pipe -------------------------------------------------------------------------------------
def test_sender_and_relay_wake_through_sockets_not_pipes(tmp_path, monkeypatch):
    def no_pipe():
        raise AssertionError("os.pipe is not pollable by zmq on Windows")

    monkeypatch.setattr(os, "pipe", no_pipe)
    pair = keymod.generate_keypair()
    from mimir.net.backlog import Backlog

    sender = Sender("tcp://127.0.0.1:9", pair, keymod.generate_keypair().public, Backlog(16, 1 << 20), session=1)
    for _ in range(100_000):  # far more than the socket buffer holds, with no thread draining: never blocks
        sender.wake()
    sender.start()
    sender.finish(0.0)
    sender.join(10)
    assert not sender.is_alive() and sender.error is None
    sender.close()
    sender.wake()  # after close: a no-op
    with LoopbackRelay(("127.0.0.1", 9)) as relay:
        relay.blackout()
        relay.restore()
