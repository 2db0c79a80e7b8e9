"""bench.common: the helpers every benchmark shares across operating systems, and the CLI's answer to a
benchmark that does not run on this OS."""

from __future__ import annotations

import importlib
import os
import sys
import time

import psutil
import pytest
import typer
from typer.testing import CliRunner

from bench import cli as bench_cli
from bench.common import UnsupportedPlatform, busy_processes, load_average_1min, sync_data


def _spin() -> None:  # pragma: no cover - runs in the busy process
    while True:
        pass


def test_busy_processes_spin_until_terminated():
    procs = busy_processes(1, _spin)
    assert len(procs) == 1 and not procs[0].is_alive()  # made, not started: the caller starts them
    procs[0].start()
    try:
        cpu = psutil.Process(procs[0].pid)
        cpu.cpu_percent(None)
        deadline = time.monotonic() + 30
        while cpu.cpu_times().user + cpu.cpu_times().system < 0.05:  # it burns CPU, it does not sleep
            assert time.monotonic() < deadline, "the busy process never used the CPU"
            time.sleep(0.05)
    finally:
        procs[0].terminate()
        procs[0].join(10)
    assert not procs[0].is_alive()


def test_load_average_is_the_os_one_where_there_is_one():
    load = load_average_1min()
    if sys.platform == "win32":
        assert load is None
    else:
        assert isinstance(load, float) and load >= 0.0


def test_sync_data_flushes_an_open_file_and_refuses_a_closed_one(tmp_path):
    path = tmp_path / "data.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"mimir")
        sync_data(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"mimir"
    with pytest.raises(OSError):
        sync_data(fd)  # closed: the system call itself answers


def test_a_benchmark_this_os_cannot_run_is_one_line_and_exit_2(monkeypatch):
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None):  # bench.rings as on an OS it rejects
        if name == "bench.rings":
            raise UnsupportedPlatform("it runs on Linux and macOS")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)
    app = typer.Typer()
    app.command()(bench_cli.bench_rings)
    out = CliRunner().invoke(app, ["--quick"])
    assert out.exit_code == 2, out.output
    assert "mimir bench rings: it runs on Linux and macOS" in out.output
    assert "Traceback" not in out.output
