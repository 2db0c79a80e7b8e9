"""The three console scripts: `mimir`, `mimir-supervisor`, `mimir-worker`: the one CLI wiring.

This package is the top layer (``ringbuf`` < ``mimir`` < ``workers`` <
``bench`` < ``mimir_cli``): the only place that imports all of them. Each
subcommand lives next to the code it drives (worker commands in
``workers/``, benchmarks in ``bench/cli.py``, the receiver in
``mimir/net/cli.py``); the small rig-inspection commands (doctor, rings,
status, config) are here.
"""

from __future__ import annotations

import json
import sys
from typing import overload

import typer

app = typer.Typer(help="Mimir: shared-memory sensor pipeline for live capture rigs.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks. Every bench prints one JSON document with --json.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
supervisor_app = typer.Typer(help="Run a whole rig.", no_args_is_help=True)
worker_app = typer.Typer(help="Capture workers (one process per camera family, one for audio).", no_args_is_help=True)


# Explicit group callbacks keep `mimir-worker camera` a subcommand even while a group has one command.
@supervisor_app.callback()
def _supervisor_group() -> None:
    """Run a whole rig."""


@worker_app.callback()
def _worker_group() -> None:
    """Capture workers (one process per camera family, one for audio)."""


@bench_app.callback()
def _bench_group() -> None:
    """Benchmarks. Every bench prints one JSON document with --json."""


@overload
def _rig_name(rig: str, command: str) -> str: ...
@overload
def _rig_name(rig: None, command: str) -> None: ...
def _rig_name(rig: str | None, command: str) -> str | None:
    """``rig`` when it is a valid rig name (or None); else one line and exit 2."""
    from mimir.config import ConfigError, check_rig_name

    if rig is None:
        return None
    try:
        return check_rig_name(rig)
    except ConfigError as exc:
        typer.echo(f"mimir {command}: {exc}", err=True)
        raise typer.Exit(2) from None


def _another_users(rig: str, command: str) -> typer.Exit:
    typer.echo(f"mimir {command}: rig {rig!r} belongs to another user: its shared memory is readable only by "
               "them; run this as that user", err=True)
    return typer.Exit(2)


@app.command()
def doctor(
    clean: bool = typer.Option(False, "--clean", help="Remove stale Mimir shared-memory objects."),
    rig: str | None = typer.Option(None, "--rig", help="Only objects of this rig."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Check PortAudio, libusb, permissions, and list (or --clean) stale shared memory."""
    from mimir.doctor import environment_checks, remove_stale, scan_objects

    rig = _rig_name(rig, "doctor")
    checks = environment_checks()
    objects = scan_objects(rig)
    removed = remove_stale(rig) if clean else []
    if json_out:
        print(json.dumps({
            "checks": [c.__dict__ for c in checks],
            "objects": [o.__dict__ for o in objects],
            "removed": removed,
        }, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else "FAIL"
            print(f"[{mark}] {c.name}: {c.detail}" + (f"\n       fix: {c.fix}" if c.fix else ""))
        print(f"\nshared memory ({len(objects)} Mimir objects)")
        for o in objects:
            state = f"STALE ({o.why})" if o.stale else f"in use ({o.why})"
            gone = "  (removed)" if o.name in removed else ""
            what = o.kind or o.role
            print(f"  {o.name:40s} {what:10s} {o.size_bytes:>12,d} B  {o.label:28s} {state}{gone}")
        stale = [o for o in objects if o.stale and o.name not in removed]
        if stale:
            print(f"\n{len(stale)} stale objects: remove them with `mimir doctor --clean`")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
def rings(
    rig: str = typer.Option("default", "--rig", help="Rig name."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Every ring of a rig: layout, published, writer pid and heartbeat, readers with their lag and losses."""
    from ringbuf import RingError, SegmentMissing, inspect_ring, scan
    from ringbuf.segment import PREFIX

    rig = _rig_name(rig, "rings")
    found = []
    objects = scan(rig)
    for obj in objects:
        if obj.kind != "ring":
            continue
        try:
            found.append(inspect_ring(obj.name[len(f"{PREFIX}{rig}-"):], rig=rig))
        except (RingError, SegmentMissing):
            continue  # gone meanwhile
        except PermissionError:
            raise _another_users(rig, "rings") from None
    if not found and any(o.role == "object" and o.why == "belongs to another user" for o in objects):
        raise _another_users(rig, "rings")
    if json_out:
        print(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo(f"rig {rig!r} has no rings")
        raise typer.Exit(1)
    for r in found:
        beat = "never" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s'] * 1e3:.0f} ms ago"
        alive = "alive" if r["writer_alive"] else "DEAD"
        typer.echo(f"{r['name']}: {r['published']:,} published, capacity {r['capacity']}, writer {r['writer_pid']} "
                   f"{alive}, heartbeat {beat}, publish errors {r['publish_errors']}")
        typer.echo(f"    {r['layout']}")
        for reader in r["readers"]:
            typer.echo(f"    reader pid {reader['pid']}: lag {reader['lag']:,}, lost {reader['lost']:,}"
                       + ("" if reader["alive"] else " (dead)"))


config_app = typer.Typer(help="Rig configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("example")
def config_example() -> None:
    """Print an annotated config covering every option."""
    from mimir.config import EXAMPLE_TOML

    sys.stdout.write(EXAMPLE_TOML)


@config_app.command("presets")
def config_presets() -> None:
    """List the audio interface presets (``[audio] preset = NAME``): each input's name and role, by sample rate."""
    from mimir.interfaces import PRESETS

    for preset in PRESETS.values():
        typer.echo(f"{preset.name}: {preset.description}")
        typer.echo(f"  source: {preset.source}")
        low = 0
        for band in preset.bands:
            layout = ", ".join(f"{k}: {i.name} ({i.role})" for k, i in enumerate(band.inputs))
            typer.echo(f"  {low / 1000:g}-{band.max_rate_hz / 1000:g} kHz: {layout}")
            if band.note:
                typer.echo(f"    note: {band.note}")
            low = band.max_rate_hz


@app.command()
def status(
    rig: str = typer.Option("default", "--rig", help="Rig name."),
    watch: bool = typer.Option(False, "--watch", help="Live view, refreshed twice a second."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show a running rig's state from shared memory: workers, sources, drops, health, clock fits.

    Exit codes: 0 the rig runs; 1 no supervisor runs it, or what is shown is the
    stale board of a supervisor that is gone (a SIGKILL); 2 a bad rig name, or
    a rig of another user.
    """
    import time

    import msgspec

    from mimir.supervisor.status import read_status, text
    from ringbuf import ObjectMismatch, SegmentMissing

    rig = _rig_name(rig, "status")

    def read():
        try:
            return read_status(rig)
        except PermissionError:
            raise _another_users(rig, "status") from None
        except ObjectMismatch as exc:  # a squatter on the board's name, or another Mimir version's board
            typer.echo(f"mimir status: rig {rig!r} has no status board this Mimir can read: "
                       f"{' '.join(str(exc).split())}", err=True)
            raise typer.Exit(2) from None

    try:
        snapshot = read()
    except SegmentMissing:
        typer.echo(f"no supervisor is running rig {rig!r}: start one with `mimir-supervisor start`", err=True)
        raise typer.Exit(1) from None
    def retention():
        """Payload held per source against the window (mimir.retention); empty when it cannot be read now."""
        from mimir.retention import payload_retention

        if not snapshot.supervisor_alive:
            return []
        try:
            return payload_retention(rig)
        except (SegmentMissing, FileNotFoundError, ObjectMismatch):
            return []  # the rig stopped meanwhile, or has no plan published yet

    if not watch:
        rows = retention()
        if json_out:
            doc = msgspec.to_builtins(snapshot)
            doc["retention"] = msgspec.to_builtins(rows)
            sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        else:
            from mimir.retention import retention_lines

            typer.echo(text(snapshot) + ("\n\n" + "\n".join(retention_lines(rows)) if rows else ""))
        if not snapshot.supervisor_alive:
            typer.echo(f"mimir status: STALE: the supervisor of rig {rig!r} (pid {snapshot.header.get('pid', '?')}) "
                       f"is gone; this is its last status. Remove what it left with `mimir doctor --clean --rig "
                       f"{rig}`, then start the rig again", err=True)
            raise typer.Exit(1)
        return
    try:
        while True:
            sys.stdout.write("\x1b[H\x1b[2J" + text(snapshot) + "\n")
            sys.stdout.flush()
            time.sleep(0.5)
            try:
                snapshot = read()
            except SegmentMissing:
                typer.echo(f"rig {rig!r} stopped")
                return
    except KeyboardInterrupt:
        pass


def _wire() -> None:
    """Attach the subcommands that live in their own modules."""
    from bench import cli as bench_cli
    from mimir.net.cli import keys_app, receiver
    from mimir.supervisor.cli import start
    from mimir.sync.cli import codebook_app, decode
    from workers.audio.cli import audio_worker, latency, soak
    from workers.camera.cli import camera_worker
    from workers.sync.cli import sync_worker

    from mimir.record.cli import record
    from mimir.snapshot.cli import snapshot

    for name in ("rings", "reservoir", "pipeline", "cameras", "audio", "receivers", "take", "gpu", "consumer",
                 "snapshot", "sync", "record"):
        bench_app.command(name)(getattr(bench_cli, f"bench_{name}"))
    app.command("snapshot")(snapshot)
    app.command("record")(record)
    app.add_typer(codebook_app, name="codebook", help="The active-witness codebook.")
    app.command("decode")(decode)
    app.command("latency")(latency)
    app.command("soak")(soak)
    app.command("receiver")(receiver)
    app.add_typer(keys_app, name="keys", help="CURVE keys for remote receivers.")
    worker_app.command("camera")(camera_worker)
    worker_app.command("audio")(audio_worker)
    worker_app.command("sync")(sync_worker)
    supervisor_app.command("start")(start)


_wire()


def main() -> None:  # pragma: no cover - console entry point convenience
    app(prog_name="mimir")


if __name__ == "__main__":  # pragma: no cover
    main()
