"""The sounddevice backend: PortAudio's ASIO, CoreAudio, WASAPI, JACK and ALSA host APIs.

The stream is a sounddevice ``_StreamBase`` (the class sounddevice documents
for library authors) given a raw cffi callback instead of a Python callable:
sounddevice's own wrapper would build two numpy arrays and a CallbackFlags
object per block, so the callback below receives PortAudio's pointers and
copies the input with one ``memmove`` straight into the claimed ring slot
(float32 and every opened channel captured), or via a preallocated staging
block converted once into the slot (int32/int16 device format or a subset of
channels). The output stage's block is copied to PortAudio's output pointer
the same way.

Timing: ``inputBufferAdcTime`` and ``currentTime`` (PortAudio's stream
clock) become the record's ``adc_time_ns`` and ``stream_time_ns``;
``host_time_ns`` is ``time.monotonic_ns()`` at callback entry (see
:class:`mimir.descriptors.AudioBlockRecord`). ``callback_jitter_us`` (a test
and benchmark hook) busy-waits a random time up to that before taking the
entry time: a callback invoked late, as on a loaded machine.

ASIO (Windows): the sounddevice wheel's ASIO build is selected by setting
``SD_ENABLE_ASIO=1`` before sounddevice is imported (done here when
``--host-api asio`` is asked for); input channels given as a list become
``AsioSettings(channel_selectors=...)`` so the driver delivers only those.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..callback import BlockProcessor, lateness
from ..config import MAX_BLOCK_FRAMES, MIN_BLOCK_FRAMES, EngineConfig
from ..errors import AudioConfigError, BackendUnavailable, EngineStateError
from .base import DevicePlan, StreamInfo

if TYPE_CHECKING:
    from sounddevice import _StreamBase

__all__ = [
    "PortAudioBackend", "load_sounddevice", "reinitialize_portaudio", "describe_devices", "STANDARD_RATES_HZ",
    "HOST_API_MATCH", "portaudio_jack_client_name", "set_jack_client_name",
]

STANDARD_RATES_HZ = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000)
HOST_API_MATCH = {
    "asio": "asio", "coreaudio": "core audio", "wasapi": "wasapi", "jack": "jack", "alsa": "alsa",
}
_DTYPES = {"float32": np.float32, "int32": np.int32, "int16": np.int16}
_SCALES = {"int32": 2.0**-31, "int16": 2.0**-15}
PA_CONTINUE = 0
PA_ABORT = 2

_CDEF = """
typedef struct PaStreamCallbackTimeInfo {
    double inputBufferAdcTime;
    double currentTime;
    double outputBufferDacTime;
} PaStreamCallbackTimeInfo;
typedef int PaStreamCallback(const void *input, void *output, unsigned long frameCount,
                             const PaStreamCallbackTimeInfo *timeInfo, unsigned long statusFlags, void *userData);
"""
_ffi = None
_jack_name_buffer = None  # PortAudio keeps the pointer it is given: keep the bytes alive for the process


def _get_ffi():
    global _ffi
    if _ffi is None:
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_CDEF)
        _ffi = ffi
    return _ffi


def _install_hint() -> str:
    if sys.platform.startswith("linux"):
        return ("install the PortAudio library: apt-get install libportaudio2 (Debian/Ubuntu), "
                "dnf install portaudio (Fedora), or run bash scripts/setup.sh")
    if sys.platform == "darwin":
        return "reinstall sounddevice (its macOS wheel bundles PortAudio): pip install --force-reinstall sounddevice"
    return "reinstall sounddevice (its Windows wheel bundles PortAudio, with ASIO): pip install --force-reinstall sounddevice"


def load_sounddevice(host_api: str | None = None) -> ModuleType:
    """Import sounddevice, turning every way PortAudio can be missing into :class:`BackendUnavailable`.

    For ``host_api == "asio"`` on Windows it sets ``SD_ENABLE_ASIO=1`` first
    (only effective if sounddevice was not imported yet).
    """
    if host_api == "asio" and sys.platform == "win32" and "sounddevice" not in sys.modules:
        os.environ.setdefault("SD_ENABLE_ASIO", "1")
    try:
        sd = importlib.import_module("sounddevice")
    except OSError as exc:
        raise BackendUnavailable(f"PortAudio could not be loaded ({exc}): {_install_hint()}") from None
    except ImportError as exc:
        raise BackendUnavailable(
            f"the Python package sounddevice is not importable ({exc}): pip install sounddevice, "
            f"and {_install_hint()}"
        ) from None
    return sd


def reinitialize_portaudio() -> None:
    """Re-scan host APIs and devices (e.g. after a JACK server started or JACK_DEFAULT_SERVER changed).

    Terminates PortAudio, which closes every stream of this process.
    """
    sd = load_sounddevice()
    sd._terminate()
    sd._initialize()


def _portaudio_cdll() -> ctypes.CDLL | None:
    sd = load_sounddevice()
    name = getattr(sd, "_libname", None) or ctypes.util.find_library("portaudio")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def set_jack_client_name(name: str) -> None:
    """Name PortAudio's JACK client (``PaJack_SetClientName``) and re-initialise PortAudio so it takes effect."""
    global _jack_name_buffer
    lib = _portaudio_cdll()
    if lib is None or not hasattr(lib, "PaJack_SetClientName"):
        raise AudioConfigError("--jack-name: this PortAudio build has no JACK support (PaJack_SetClientName missing)")
    buf = ctypes.create_string_buffer(name.encode())
    if lib.PaJack_SetClientName(buf) != 0:
        raise AudioConfigError(f"--jack-name {name!r} was refused by PortAudio (too long?)")
    _jack_name_buffer = buf
    reinitialize_portaudio()


def portaudio_jack_client_name() -> str | None:
    """The name of the JACK client PortAudio opened (``PaJack_GetClientName``), or None."""
    lib = _portaudio_cdll()
    if lib is None or not hasattr(lib, "PaJack_GetClientName"):
        return None
    out = ctypes.c_char_p()
    if lib.PaJack_GetClientName(ctypes.byref(out)) != 0 or not out.value:
        return None
    return out.value.decode(errors="replace")


def describe_devices(sd: ModuleType, hostapi_index: int | None = None) -> str:
    """One line per device: index, name, host API, channels, default rate."""
    lines = []
    apis = sd.query_hostapis()
    for dev in sd.query_devices():
        if hostapi_index is not None and dev["hostapi"] != hostapi_index:
            continue
        lines.append(
            f"  [{dev['index']}] {dev['name']} ({apis[dev['hostapi']]['name']}): "
            f"{dev['max_input_channels']} in, {dev['max_output_channels']} out, {dev['default_samplerate']:.0f} Hz"
        )
    if lines:
        return "\n".join(lines)
    if hostapi_index is not None:
        return "  (none on this host API)"
    return ("  (none: PortAudio sees no audio device at all; on a machine without a sound card start a JACK "
            "server, e.g. jackd -d dummy -r 48000 -p 256, and use --host-api jack)")


def _hostapi_index(sd: ModuleType, host_api: str) -> int:
    apis = sd.query_hostapis()
    want = HOST_API_MATCH[host_api]
    for i, api in enumerate(apis):
        if want in api["name"].lower():
            return i
    present = ", ".join(a["name"] for a in apis) or "none"
    hints = {
        "jack": "JACK shows up only while a JACK server runs when PortAudio initialises: start jackd first "
                "(and set JACK_DEFAULT_SERVER if the server has a name)",
        "asio": "ASIO needs Windows, the sounddevice wheel's ASIO build (SD_ENABLE_ASIO=1 before importing "
                "sounddevice) and an installed ASIO driver",
        "coreaudio": "Core Audio exists on macOS only",
        "wasapi": "WASAPI exists on Windows only",
        "alsa": "ALSA needs a PortAudio built with ALSA support (Linux)",
    }
    raise AudioConfigError(f"--host-api {host_api}: not available here; PortAudio offers: {present}. {hints[host_api]}")


def _resolve_device(sd: ModuleType, cfg: EngineConfig) -> tuple[int, dict, int | None]:
    api_index = _hostapi_index(sd, cfg.host_api) if cfg.host_api else None
    devices = sd.query_devices()
    scope = f" of host API {sd.query_hostapis(api_index)['name']}" if api_index is not None else ""
    listing = lambda: describe_devices(sd, api_index)  # noqa: E731
    dev = cfg.device
    if dev is not None and not isinstance(dev, int) and str(dev).strip().lstrip("-").isdigit():
        dev = int(str(dev).strip())
    if dev is None:
        if api_index is not None:
            index = sd.query_hostapis(api_index)["default_input_device"]
        else:
            index = sd.default.device[0] if sd.default.device[0] is not None and sd.default.device[0] >= 0 else -1
            if index < 0:
                index = sd.query_hostapis(0)["default_input_device"] if sd.query_hostapis() else -1
        if index is None or index < 0:
            raise AudioConfigError(f"no default input device{scope}; choose one with --device. Devices:\n{listing()}")
        return index, devices[index], api_index
    if isinstance(dev, int):
        if not (0 <= dev < len(devices)) or (api_index is not None and devices[dev]["hostapi"] != api_index):
            raise AudioConfigError(f"--device {dev}: no such device{scope}. Devices:\n{listing()}")
        return dev, devices[dev], api_index
    query = str(dev).lower()
    candidates = [d for d in devices if api_index is None or d["hostapi"] == api_index]
    exact = [d for d in candidates if d["name"].lower() == query]
    matches = exact or [d for d in candidates if query in d["name"].lower()]
    if not matches:
        raise AudioConfigError(f"--device {dev!r}: no device{scope} matches. Devices:\n{listing()}")
    if len(matches) > 1:
        names = "\n".join(f"  [{d['index']}] {d['name']}" for d in matches)
        raise AudioConfigError(f"--device {dev!r} matches several devices{scope}; give the index:\n{names}")
    return matches[0]["index"], matches[0], api_index


def _asio_buffer_sizes(device_index: int) -> tuple[int, int, int, int] | None:
    lib = _portaudio_cdll()
    if lib is None or not hasattr(lib, "PaAsio_GetAvailableBufferSizes"):
        return None
    lo, hi, pref, gran = (ctypes.c_long() for _ in range(4))
    if lib.PaAsio_GetAvailableBufferSizes(device_index, *(ctypes.byref(x) for x in (lo, hi, pref, gran))) != 0:
        return None
    return lo.value, hi.value, pref.value, gran.value


class PortAudioBackend:
    """A duplex (or input-only) PortAudio stream feeding the processor from PortAudio's callback thread."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.plan: DevicePlan | None = None
        self.finished = False
        self.failed: str | None = None
        self._sd: ModuleType | None = None
        self._stream: _StreamBase | None = None
        self._callback: Callable[..., int] | None = None  # the cffi callback: PortAudio calls it while it lives
        self._open_in_channels = 0
        self._asio = None
        self._is_jack = False

    # ---- prepare: resolve and validate ------------------------------------------------------------------------
    def prepare(self) -> DevicePlan:
        cfg = self.config
        sd = self._sd = load_sounddevice(cfg.host_api)
        if cfg.jack_client_name:
            set_jack_client_name(cfg.jack_client_name)
        index, dev, api_index = _resolve_device(sd, cfg)
        api_name = sd.query_hostapis(dev["hostapi"])["name"]
        self._is_jack = "jack" in api_name.lower()
        label = f"{dev['name']} ({api_name})"
        max_in, max_out = int(dev["max_input_channels"]), int(dev["max_output_channels"])
        if max_in < 1:
            raise AudioConfigError(f"device [{index}] {label} has no inputs; choose an input device. Devices:\n"
                                   f"{describe_devices(sd, api_index)}")
        selected = cfg.channels.resolve(max_in)
        is_asio = "asio" in api_name.lower()
        if is_asio and cfg.channels.selectors is not None:
            self._asio = sd.AsioSettings(channel_selectors=list(selected))
            self._open_in_channels = len(selected)
            ring_order = tuple(range(len(selected)))
        else:
            self._open_in_channels = max(selected) + 1
            ring_order = selected
        self._selectors = np.asarray(ring_order, dtype=np.intp)
        self._direct = cfg.sample_format == "float32" and ring_order == tuple(range(self._open_in_channels))
        n_out = self._output_channels(len(selected), max_out, label)
        rate = cfg.rate_or_default()
        self._check_rate(sd, index, label, rate, n_out)
        block = cfg.block_frames
        if is_asio and block:
            sizes = _asio_buffer_sizes(index)
            if sizes and not _asio_block_ok(block, sizes):
                lo, hi, pref, gran = sizes
                step = "powers of two" if gran == -1 else (f"steps of {gran}" if gran > 0 else "only the preferred size")
                raise AudioConfigError(
                    f"--block {block}: the ASIO driver of {label} supports buffer sizes {lo}..{hi} frames in "
                    f"{step} (preferred {pref}); use one of those, or set it in the driver's control panel"
                )
        natural = max(1, int(round(float(dev["default_low_input_latency"]) * rate)))
        if block:
            slot, expected = block, block
        else:
            expected = max(natural, MIN_BLOCK_FRAMES)
            slot = min(MAX_BLOCK_FRAMES, max(1024, 2 * expected))
        self.plan = DevicePlan(
            backend="sounddevice", device_label=label, host_api=api_name, device_index=index, sample_rate_hz=rate,
            block_frames=block, slot_frames=slot, expected_frames=expected, input_channels=selected,
            output_channels=n_out, sample_format=cfg.sample_format,
        )
        return self.plan

    def _output_channels(self, n_in: int, max_out: int, label: str) -> int:
        cfg = self.config
        if cfg.output_channels is not None:
            if cfg.output_channels > max_out:
                raise AudioConfigError(f"--output-channels {cfg.output_channels}: {label} has {max_out} output(s)")
            return cfg.output_channels
        if max_out == 0:
            if cfg.output not in ("silence",):
                raise AudioConfigError(
                    f"--output {cfg.output}: {label} has no outputs; use --output silence (input only) "
                    "or a duplex device"
                )
            return 0
        if cfg.output == "passthrough" and cfg.through_channel is None:
            return n_in if n_in <= max_out else max_out
        return min(max_out, n_in)

    def _check_rate(self, sd: ModuleType, index: int, label: str, rate: int, n_out: int) -> None:
        dtype = self.config.sample_format

        def ok(r: int) -> bool:
            try:
                sd.check_input_settings(device=index, channels=self._open_in_channels, dtype=dtype, samplerate=r,
                                        extra_settings=self._asio)
                if n_out:
                    sd.check_output_settings(device=index, channels=n_out, dtype="float32", samplerate=r)
                return True
            except Exception:
                return False

        if ok(rate):
            return
        supported = [r for r in STANDARD_RATES_HZ if ok(r)]
        hint = " (a JACK server runs at one rate: restart jackd with -r RATE to change it)" if self._is_jack else ""
        if not supported:
            raise AudioConfigError(
                f"{label} cannot open {self._open_in_channels} input channel(s) as {dtype} at {rate} Hz, "
                f"nor at any standard rate; check --channels and --sample-format{hint}"
            )
        raise AudioConfigError(
            f"--rate {rate}: {label} does not support {rate} Hz; it supports "
            f"{', '.join(str(r) for r in supported)} Hz{hint}"
        )

    # ---- open: the stream and its callback ------------------------------------------------------------------------
    def _planned(self) -> DevicePlan:
        """The plan :meth:`prepare` made (every step after it needs one)."""
        if self.plan is None:
            raise EngineStateError("the sounddevice backend has no plan: prepare() first")
        return self.plan

    def open(self, processor: BlockProcessor) -> StreamInfo:
        sd = self._sd
        plan = self._planned()
        if sd is None:  # prepare() loaded it with the plan
            raise EngineStateError("the sounddevice backend has not loaded sounddevice: prepare() first")
        cfg = self.config
        jack_before = self._jack_ports() if self._is_jack else []
        self._callback = self._make_callback(processor)
        duplex = plan.output_channels > 0
        kind = "duplex" if duplex else "input"
        kwargs = dict(
            samplerate=plan.sample_rate_hz, blocksize=plan.block_frames,
            device=(plan.device_index, plan.device_index) if duplex else plan.device_index,
            channels=(self._open_in_channels, plan.output_channels) if duplex else self._open_in_channels,
            dtype=(cfg.sample_format, "float32") if duplex else cfg.sample_format,
            latency=cfg.latency, extra_settings=(self._asio, None) if duplex else self._asio,
            callback=self._callback, clip_off=True, dither_off=True,
        )
        try:
            stream = sd._StreamBase(kind=kind, wrap_callback=None, **kwargs)
        except sd.PortAudioError as exc:
            raise AudioConfigError(
                f"PortAudio could not open {plan.device_label} at {plan.sample_rate_hz} Hz, block "
                f"{plan.block_frames or 'host-native'}, {self._open_in_channels} in / {plan.output_channels} out: "
                f"{exc}. Supported: block 0 or {MIN_BLOCK_FRAMES}..{MAX_BLOCK_FRAMES} frames; rates as listed by "
                "`python -m sounddevice`"
            ) from None
        self._stream = stream
        if int(round(stream.samplerate)) != plan.sample_rate_hz:
            self.close()
            raise AudioConfigError(
                f"--rate {plan.sample_rate_hz}: {plan.device_label} opened at {stream.samplerate:.0f} Hz instead"
            )
        cpu_fget = type(stream).cpu_load.fget
        processor.cpu_load_fn = lambda: cpu_fget(stream)
        latency = stream.latency
        in_lat, out_lat = (latency if duplex else (latency, 0.0))
        client: str | None = None
        ins: tuple[str, ...] = ()
        outs: tuple[str, ...] = ()
        if self._is_jack:
            client = portaudio_jack_client_name()
            new = [p for p in self._jack_ports() if p not in set(jack_before)]
            if client:
                new = [p for p in new if p.startswith(client + ":")]
            ins = tuple(sorted((p for p in new if ":in_" in p), key=_port_number))
            outs = tuple(sorted((p for p in new if ":out_" in p), key=_port_number))
        return StreamInfo(plan=plan, input_latency_s=float(in_lat), output_latency_s=float(out_lat),
                          jack_client=client, jack_input_ports=ins, jack_output_ports=outs)

    def _jack_ports(self) -> list[str]:
        from .. import jack

        try:
            return jack.list_ports()
        except jack.JackError:
            return []

    def _python_callback(self, proc: BlockProcessor):
        """The Python body of the PortAudio callback. Everything it touches is bound here, once."""
        ffi = _get_ffi()
        memmove = ffi.memmove
        monotonic_ns = time.monotonic_ns
        claim = proc.claim
        commit = proc.commit
        _late = lateness(self.config.callback_jitter_us)
        jitter_ns = _late is not None
        plan = self._planned()
        slot_frames = plan.slot_frames
        in_dtype = _DTYPES[plan.sample_format]
        in_frame_bytes = self._open_in_channels * np.dtype(in_dtype).itemsize
        out_frame_bytes = plan.output_channels * 4
        has_output = plan.output_channels > 0
        slot_in_bytes = slot_frames * in_frame_bytes
        zeros = np.zeros(slot_frames * max(1, plan.output_channels), dtype=np.float32)

        def play(optr, out, frames):
            if frames <= slot_frames:
                memmove(optr, out, frames * out_frame_bytes)
            else:  # truncated block: play what we have, then silence
                memmove(optr, out, slot_frames * out_frame_bytes)
                rest = (frames - slot_frames) * out_frame_bytes
                memmove(ffi.cast("char *", optr) + slot_frames * out_frame_bytes, zeros, min(rest, zeros.nbytes))

        if self._direct:
            def direct(iptr, optr, frames, time_info, status, userdata):
                entry_ns = monotonic_ns()
                if jitter_ns:
                    _late(entry_ns)
                    entry_ns = monotonic_ns()
                slot = claim()
                memmove(slot, iptr, frames * in_frame_bytes if frames <= slot_frames else slot_in_bytes)
                out = commit(slot, frames, int(time_info.inputBufferAdcTime * 1e9), entry_ns, status,
                             int(time_info.currentTime * 1e9))
                if has_output:
                    if frames <= slot_frames:
                        memmove(optr, out, frames * out_frame_bytes)
                    else:
                        play(optr, out, frames)
                return PA_CONTINUE

            return direct

        stage = np.zeros((slot_frames, self._open_in_channels), dtype=in_dtype)
        selectors = self._selectors
        identity = bool(np.array_equal(selectors, np.arange(self._open_in_channels)))
        selected = np.zeros((slot_frames, len(selectors)), dtype=in_dtype)
        scale = _SCALES.get(plan.sample_format)

        def callback(iptr, optr, frames, time_info, status, userdata):
            entry_ns = monotonic_ns()
            if jitter_ns:
                _late(entry_ns)
                entry_ns = monotonic_ns()
            slot = claim()
            memmove(stage, iptr, frames * in_frame_bytes if frames <= slot_frames else slot_in_bytes)
            src = stage
            if not identity:
                np.take(stage, selectors, axis=1, out=selected if scale else slot, mode="clip")
                src = selected
            if scale:
                np.multiply(src, scale, out=slot, casting="unsafe")
            out = commit(slot, frames, int(time_info.inputBufferAdcTime * 1e9), entry_ns, status,
                         int(time_info.currentTime * 1e9))
            if has_output:
                play(optr, out, frames)
            return PA_CONTINUE

        return callback

    def _make_callback(self, proc: BlockProcessor):
        """Wrap :meth:`_python_callback` as a PortAudio callback (cffi); an exception aborts the stream."""
        ffi = _get_ffi()

        def onerror(exc_type, exc_value, tb):
            import traceback

            self.failed = f"{exc_type.__name__}: {exc_value}"
            proc.record_failure(self.failed + "\n" + "".join(traceback.format_exception(exc_type, exc_value, tb)))
            return PA_ABORT

        return ffi.callback("PaStreamCallback", self._python_callback(proc), error=PA_ABORT, onerror=onerror)

    # ---- run ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._stream is None:
            raise EngineStateError("the sounddevice backend has no stream: open() first")
        self._stream.start()

    def stop(self) -> None:
        if self._stream is not None and not self._stream.stopped:
            self._stream.stop()

    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self.stop()
            finally:
                self._stream.close()
                self._stream = None


def _asio_block_ok(block: int, sizes: tuple[int, int, int, int]) -> bool:
    lo, hi, pref, gran = sizes
    if not (lo <= block <= hi):
        return False
    if gran == -1:
        return block & (block - 1) == 0
    if gran == 0:
        return block == pref
    return (block - lo) % gran == 0


def _port_number(port: str) -> int:
    try:
        return int(port.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0
