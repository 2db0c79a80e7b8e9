"""Typer command functions of the audio worker, for ``mimir`` / ``mimir-worker`` to wire.

* ``audio_worker``  -> ``mimir-worker audio``
* ``latency``       -> ``mimir latency``
* ``soak``          -> ``mimir soak``

Each turns a bad input into one clear line on stderr and a non-zero exit
code (2 bad input, 3 missing library, 1 runtime failure), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from .config import EngineConfig, parse_channels
from .errors import AudioError

__all__ = ["audio_worker", "latency", "soak", "build_config"]

# ---- shared options ------------------------------------------------------------------------------------------------
Backend = Annotated[str, typer.Option("--backend", help="sounddevice (PortAudio) | synthetic | file")]
HostApi = Annotated[Optional[str], typer.Option("--host-api", help="asio | coreaudio | wasapi | jack | alsa")]
Device = Annotated[Optional[str], typer.Option("--device", help="Device name (substring) or index; lists devices if unknown")]
Rate = Annotated[Optional[int], typer.Option("--rate", help="Sample rate in Hz [default: 48000; a file's own rate]")]
Block = Annotated[int, typer.Option("--block", help="Frames per callback; 0 = the host's own size (no extra latency)")]
Channels = Annotated[Optional[str], typer.Option("--channels", help="Input channels: N (first N) or 0-based list 0,2 / range 0-3 [default: up to 2]")]
Rig = Annotated[str, typer.Option("--rig", help="Rig name (shared-memory namespace)")]
RingName = Annotated[str, typer.Option("--ring", help="Audio ring name; metrics go to <ring>.metrics")]
FilePath = Annotated[Optional[Path], typer.Option("--file", help="--backend file: WAV/FLAC to replay")]
Signal = Annotated[str, typer.Option("--signal", help="--backend synthetic: ramp | sine | noise | impulse | silence | loopback | room | reverb-room")]
Ppm = Annotated[float, typer.Option("--ppm", help="--backend synthetic: clock error in ppm (+ runs fast)")]
JackName = Annotated[Optional[str], typer.Option("--jack-name", help="JACK client name of the stream")]
SampleFormat = Annotated[str, typer.Option("--sample-format", help="Device-side input format: float32 | int32 | int16")]
JackDummy = Annotated[bool, typer.Option("--jack-dummy", help="Start a private `jackd -d dummy` at --rate for this run (implies --host-api jack)")]
JackPeriod = Annotated[int, typer.Option("--jack-period", help="--jack-dummy: the server's period in frames [default: --block, or 256]")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (progress on stderr)")]


def build_config(*, backend: str = "sounddevice", host_api: str | None = None, device: str | None = None,
                 rate: int | None = None, block: int = 64, channels: str | None = None, **more) -> EngineConfig:
    """An :class:`EngineConfig` from CLI-style values (raises AudioConfigError on bad input)."""
    dev: str | int | None = device
    if isinstance(device, str) and device.strip().isdigit():
        dev = int(device)
    return EngineConfig(backend=backend, host_api=host_api, device=dev, sample_rate_hz=rate, block_frames=block,
                        channels=parse_channels(channels), **more).validate()


def _fail(prog: str, exc: AudioError) -> typer.Exit:
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return typer.Exit(exc.exit_code)


@contextmanager
def _jack_dummy(enabled: bool, rate: int | None, period: int) -> Iterator[None]:
    """Optionally run a private JACK dummy server for the duration, pointing this process at it."""
    if not enabled:
        yield
        return
    from . import jack
    from .backends.portaudio import reinitialize_portaudio

    server = jack.DummyServer(rate or 48000, period)
    server.start()
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    print(f"jackd -d dummy -r {server.sample_rate_hz} -p {server.period_frames} running as {server.name} "
          f"(realtime: {server.realtime})", file=sys.stderr)
    try:
        reinitialize_portaudio()
        yield
    finally:
        try:
            from .backends.portaudio import load_sounddevice

            load_sounddevice()._terminate()
        except Exception:
            pass
        server.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            from .backends.portaudio import load_sounddevice

            load_sounddevice()._initialize()
        except Exception:
            pass


# ---- mimir-worker audio ------------------------------------------------------------------------------------------------
def audio_worker(
    backend: Backend = "sounddevice",
    host_api: HostApi = None,
    device: Device = None,
    rate: Rate = None,
    block: Block = 64,
    channels: Channels = None,
    output: Annotated[str, typer.Option("--output", help="passthrough | witness | silence (probes: impulse | mls)")] = "passthrough",
    rig: Rig = "default",
    ring: RingName = "audio",
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds")] = None,
    file: FilePath = None,
    loop: Annotated[bool, typer.Option("--loop", help="--backend file: start over at the end")] = False,
    signal: Signal = "ramp",
    ppm: Ppm = 0.0,
    through_channel: Annotated[Optional[int], typer.Option("--through-channel", help="passthrough: play this captured channel on every output")] = None,
    output_channels: Annotated[Optional[int], typer.Option("--output-channels", help="Output channels [default: as many as inputs]")] = None,
    sample_format: SampleFormat = "float32",
    jack_name: JackName = None,
    jack_loopback: Annotated[bool, typer.Option("--jack-loopback", help="Connect the stream's JACK out_k -> in_k (tests, latency)")] = False,
    ring_seconds: Annotated[float, typer.Option("--ring-seconds", help="Audio kept in the ring")] = 2.0,
    metrics_seconds: Annotated[float, typer.Option("--metrics-seconds", help="Callback metrics kept in the metrics ring")] = 10.0,
    health_window: Annotated[float, typer.Option("--health-window", help="Seconds without xrun/miss before health is green")] = 3.0,
    impulse_period: Annotated[Optional[int], typer.Option("--impulse-period", help="--output impulse: frames between impulses")] = None,
    simulate_load_us: Annotated[float, typer.Option("--simulate-load-us", hidden=True)] = 0.0,
    callback_jitter_us: Annotated[float, typer.Option("--callback-jitter-us", hidden=True)] = 0.0,
    loopback_input: Annotated[int, typer.Option("--loopback-input", help="--signal room | reverb-room: the input wired to the output (the others are microphones)")] = 0,
) -> None:
    """Capture audio into the rig's ring (duplex: pass-through, witness or silence out) until SIGTERM/SIGINT."""
    from .runner import run_worker

    try:
        cfg = build_config(
            backend=backend, host_api=host_api, device=device, rate=rate, block=block, channels=channels,
            output=output, rig=rig, ring=ring, path=file, loop=loop, signal=signal, ppm=ppm,
            through_channel=through_channel, output_channels=output_channels, sample_format=sample_format,
            jack_client_name=jack_name, ring_seconds=ring_seconds, metrics_seconds=metrics_seconds,
            health_window_s=health_window, impulse_period_frames=impulse_period, simulate_load_us=simulate_load_us,
            callback_jitter_us=callback_jitter_us, loopback_input=loopback_input,
            freeze_gc=True, realtime_threads=True,
        )
        code = run_worker(cfg, duration_s=duration, jack_loopback=jack_loopback)
    except AudioError as exc:
        raise _fail("mimir-worker audio", exc) from None
    if code:
        raise typer.Exit(code)


# ---- mimir latency ------------------------------------------------------------------------------------------------------
def latency(
    backend: Backend = "sounddevice",
    host_api: HostApi = None,
    device: Device = None,
    rate: Rate = None,
    block: Block = 64,
    channels: Channels = None,
    signal: Annotated[str, typer.Option("--signal", help="impulse | mls")] = "impulse",
    repeats: Annotated[int, typer.Option("--repeats", help="Probes to measure")] = 4,
    loopback: Annotated[str, typer.Option("--loopback", help="auto | jack (connect the stream's ports) | external (a cable)")] = "auto",
    input_channel: Annotated[int, typer.Option("--input-channel", help="Captured channel the probe returns on")] = 0,
    output_channel: Annotated[int, typer.Option("--output-channel", help="Output channel the probe is played on")] = 0,
    compare_iodelay: Annotated[bool, typer.Option("--compare-iodelay", help="Also run jack_iodelay on the same JACK server")] = False,
    jack_dummy: JackDummy = False,
    jack_period: JackPeriod = 0,
    jack_name: JackName = None,
    rig: Rig = "default",
    ring: RingName = "latency",
    json_out: JsonOut = False,
) -> None:
    """Round-trip latency through a loopback (impulse or MLS), beside the stream's reported in+out latency."""
    from .latency import format_latency, measure_latency

    try:
        if jack_dummy:
            host_api = host_api or "jack"
        cfg = build_config(backend=backend, host_api=host_api, device=device, rate=rate, block=block,
                           channels=channels, rig=rig, ring=ring, jack_client_name=jack_name)
        with _jack_dummy(jack_dummy, rate, jack_period or block or 256):
            result = measure_latency(cfg, signal=signal, repeats=repeats, loopback=loopback,
                                     input_channel=input_channel, output_channel=output_channel,
                                     compare_iodelay=compare_iodelay)
    except AudioError as exc:
        raise _fail("mimir latency", exc) from None
    except Exception as exc:  # JACK tool failures and the like: one line, non-zero
        print(f"mimir latency: error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(json.dumps(result.as_dict()) if json_out else format_latency(result))


# ---- mimir soak ---------------------------------------------------------------------------------------------------------
def soak(
    minutes: Annotated[float, typer.Option("--minutes", help="How long to run")] = 30.0,
    backend: Backend = "sounddevice",
    host_api: HostApi = None,
    device: Device = None,
    rate: Rate = None,
    block: Block = 64,
    channels: Channels = None,
    loopback: Annotated[str, typer.Option("--loopback", help="auto | jack | external")] = "auto",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the figure (PNG) here")] = None,
    progress: Annotated[float, typer.Option("--progress", help="Seconds between progress lines on stderr")] = 10.0,
    jack_dummy: JackDummy = False,
    jack_period: JackPeriod = 0,
    jack_name: JackName = None,
    signal: Signal = "ramp",
    ppm: Ppm = 0.0,
    rig: Rig = "default",
    ring: RingName = "soak",
    json_out: JsonOut = False,
) -> None:
    """The stability run: callbacks, xruns, deadline misses, duration and latency histograms, CPU."""
    from .soak import format_soak, plot_soak, run_soak

    try:
        if minutes <= 0:
            raise AudioError("--minutes must be positive")
        if jack_dummy:
            host_api = host_api or "jack"
        cfg = build_config(backend=backend, host_api=host_api, device=device, rate=rate, block=block,
                           channels=channels, rig=rig, ring=ring, jack_client_name=jack_name, signal=signal, ppm=ppm)
        with _jack_dummy(jack_dummy, rate, jack_period or block or 256):
            result = run_soak(cfg, minutes, loopback=loopback, progress_s=progress)
    except AudioError as exc:
        raise _fail("mimir soak", exc) from None
    doc = result.as_dict()
    if plot is not None:
        plot_soak(result, plot)
        doc["plot"] = str(plot)
        print(f"plot written to {plot}", file=sys.stderr)
    print(json.dumps(doc) if json_out else format_soak(doc))
    if result.worker_exit_code not in (0, None):
        raise typer.Exit(1)
