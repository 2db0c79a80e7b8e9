"""The receiver's clocks: host times of audio blocks (a paced file, a real JACK device through PortAudio) and
canonical time at a host time (mimir.net.hostclock composed with a real StreamingReceiver)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from mimir.net.audio_source import DeviceAudio, FileAudio
from mimir.net.hostclock import HostCanonical
from mimir.sync import Codebook, StreamingReceiver
from mimir.sync.trials import Condition
from mimir.timebase import HostToDevice

RATE = 48_000


def test_a_paced_file_stamps_blocks_with_its_pacing_clock(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(str(path), np.zeros(RATE, dtype=np.float32), RATE, subtype="FLOAT")
    audio = FileAudio(str(path), block_frames=4800, speed=4.0)
    assert audio.host_clock == "pacing"
    start = time.monotonic_ns()
    blocks = []
    for block in audio.blocks(threading.Event()):
        blocks.append((block, time.monotonic_ns()))
    t0 = blocks[0][0].host_ns
    assert start <= t0 <= blocks[0][1]
    for block, yielded_ns in blocks:
        assert block.host_ns == t0 + round(block.start_sample * 1e9 / RATE / 4.0)  # the pacing clock, exactly
        assert yielded_ns >= block.host_ns + round(block.samples.size * 1e9 / RATE / 4.0)  # once complete
    fast = FileAudio(str(path), block_frames=4800, fast=True)
    assert fast.host_clock == "none"
    assert {b.host_ns for b in fast.blocks(threading.Event())} == {None}


# ---------------------------------------------------------------------------------------------- JACK
@pytest.fixture(scope="module")
def jack_device():
    """A private ``jackd -d dummy`` server (stopped by pid) and the index of PortAudio's JACK input on it."""
    from workers.audio import jack

    missing = jack.jack_tools_available()
    if missing:
        pytest.skip(f"{missing} is not installed (apt-get install jackd2), so there is no JACK server to test with")
    from workers.audio.backends.portaudio import load_sounddevice, reinitialize_portaudio

    sd = load_sounddevice()
    server = jack.DummyServer(RATE, 256, name=f"mimirnet{os.getpid()}")
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    try:
        server.start()
        os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
        reinitialize_portaudio()
        apis = [i for i, api in enumerate(sd.query_hostapis()) if "jack" in api["name"].lower()]
        if not apis:
            pytest.fail("PortAudio does not see the JACK server: this libportaudio2 has no JACK support")
        devices = [i for i, d in enumerate(sd.query_devices())
                   if d["hostapi"] == apis[0] and d["max_input_channels"] > 0]
        yield devices[0]
    finally:
        try:
            sd._terminate()  # close PortAudio's JACK client before its server goes away
        finally:
            server.close()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            sd._initialize()


def test_a_jack_device_places_blocks_by_the_drivers_adc_times(jack_device):
    """PortAudio's JACK host API reports ADC times: blocks are placed by them (through the lower envelope of
    callback entry minus stream time), before the callback that delivered them, one block period apart."""
    audio = DeviceAudio(str(jack_device), rate_hz=RATE, block_frames=256)
    fit = HostToDevice(256)
    seen = []
    try:
        for block in audio.blocks(threading.Event()):
            now = time.monotonic_ns()
            assert block.host_ns is not None and block.host_ns < now
            seen.append(block)
            if len(seen) > 100:
                fit.add(block.host_ns, block.start_sample)
            if len(seen) >= 400:
                break
    finally:
        audio.close()
    assert audio.host_clock == "adc"
    assert [b.start_sample for b in seen] == [256 * k for k in range(len(seen))] or audio.input_blocks_dropped
    assert abs(fit.slope_hz() / RATE - 1.0) < 1e-3   # the dummy driver's clock is the host's


def test_a_driver_without_adc_times_falls_back_to_the_callback_entry_time(jack_device):
    """Some backends report no ADC time (0): the block is then placed at the callback's entry time. The
    callback is called here with PortAudio's own time-info struct, zeroed, as such a backend fills it."""
    import sounddevice as sd

    audio = DeviceAudio(str(jack_device), rate_hz=RATE, block_frames=256)
    audio.close()
    while not audio._queue.empty():
        audio._queue.get_nowait()
    before = time.monotonic_ns()
    audio._callback(np.zeros((256, 1), dtype=np.float32), 256, sd._ffi.new("PaStreamCallbackTimeInfo*"),
                    sd.CallbackFlags())
    after = time.monotonic_ns()
    block = next(audio.blocks(threading.Event()))
    assert audio.host_clock == "entry" and before <= block.host_ns <= after


# ---------------------------------------------------------------------------------------------- composition
def _decode(path, host_of_sample, splice=None):
    """Feed a file block by block into a StreamingReceiver; after each block publish the host line."""
    audio, rate = sf.read(str(path), dtype="float32")
    if splice is not None:
        a, b = int(splice[0] * rate), int((splice[0] + splice[1]) * rate)
        audio = np.concatenate([audio[:a], audio[b:]])
    rx = StreamingReceiver(Codebook.from_id("mimir-default", 0), float(rate), "t")
    hc = HostCanonical()
    lines = []
    for at in range(0, audio.size, 1024):
        block = audio[at: at + 1024]
        rx.feed(block, start_sample=at)
        hc.add_block(at, None if host_of_sample is None else host_of_sample(at))
        lines.append((at, rx.locked, hc.update(rx, at + block.size, rx.health.discontinuities)))
    return rx, lines


def test_canonical_time_at_a_host_time_composes_the_two_fits(net):
    """Host clock 30 ppm fast against the sound card; the line gives the file's true canonical time at any host
    time (within the receiver's own fit error), with a scale that carries both rates."""
    w = net.witness("hc", Condition("hc", "", ppm=120.0, snr_db=20.0, seconds=8.0), seed=93)
    h0 = 7_000 * 10**9
    ns_per_sample = 1e9 / RATE * (1 + 30e-6)

    def host(sample: float) -> int:
        return h0 + round(sample * ns_per_sample)

    rx, lines = _decode(w.path, host)
    assert all(line is None for _, locked, line in lines if not locked)
    line = lines[-1][2]
    assert line is not None and line.segment == 0
    for sample in (2.0 * RATE, 5.5 * RATE, 8.0 * RATE):
        truth_ns = (w.t0_s + sample / w.true_rate_hz) * 1e9
        assert abs(line.canonical_ns_at(host(sample)) - truth_ns) < 20_000  # ~1 sample: the receiver's fit
    assert abs(line.scale - RATE / (1 + 30e-6) / w.true_rate_hz) < 1e-6
    _, fast = _decode(w.path, None)  # no host times: no line, locked or not
    assert any(locked for _, locked, _ in fast) and all(line is None for _, _, line in fast)


def test_a_relock_publishes_lines_of_the_new_segment(net):
    w = net.witness("relock", Condition("relock", "", ppm=80.0, snr_db=20.0, seconds=12.0), seed=94)
    h0 = 9_000 * 10**9

    def host(sample: float) -> int:
        return h0 + round(sample * 1e9 / RATE)

    rx, lines = _decode(w.path, host, splice=(4.5, 0.3))
    segments = [line.segment for _, _, line in lines if line is not None]
    assert segments[0] == 0 and segments[-1] == 1 == rx.health.discontinuities
    before = next(line for _, _, line in reversed(lines) if line is not None and line.segment == 0)
    after = lines[-1][2]
    h = host(10.0 * RATE)
    assert abs((after.canonical_ns_at(h) - before.canonical_ns_at(h)) - 0.3e9) < 50_000  # the 0.3 s that went missing
