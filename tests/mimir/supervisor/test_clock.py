"""Canonical clock composition against a known truth."""
import numpy as np

from mimir.supervisor.clock import CanonicalClock, ClockState, DeviceToCanonical, SegmentReason
from mimir.timebase import HostToDevice


def test_host_to_device_recovers_rate_and_offset_under_jitter():
    rng = np.random.default_rng(1)
    fit = HostToDevice(window=2000)
    true_rate = 48_000 * (1 + 37e-6)  # a device 37 ppm fast against the host clock
    for block in range(5000):
        sample = block * 64
        host_ns = 10_000_000_000 + int(sample / true_rate * 1e9) + int(rng.normal(0, 50_000))  # 50 us jitter
        fit.add(host_ns, sample)
    assert abs(fit.slope_hz() - true_rate) / true_rate < 2e-6
    probe_host = 10_000_000_000 + int(300_000 / true_rate * 1e9)
    assert abs(fit.device_sample_at(probe_host) - 300_000) < 2.0  # within 2 samples at 48 kHz
    assert abs(fit.host_ns_at(300_000) - probe_host) < 50_000


def test_canonical_clock_is_provisional_then_follows_the_fit():
    clock = CanonicalClock(epoch_unix_s=0.0)
    assert not clock.locked
    provisional = clock.from_host_ns(5_000_000_000)
    assert provisional > 1.6e18  # wall-clock seconds since 1970, in ns
    for block in range(100):
        clock.observe_audio_block(1_000_000_000 + block * 1_333_333, block * 64)
    clock.set_fit(DeviceToCanonical(local_sample_at_epoch=-48_000 * 1000.0, rate_hz=48_000.0))
    assert clock.locked
    # host 1 s -> device sample 0 -> canonical 1000 s
    assert abs(clock.from_host_ns(1_000_000_000) - 1000 * 10**9) < 50_000
    assert clock.from_device_sample(48_000, host_ns=0) == 1001 * 10**9


def _feed(clock, blocks, *, host0_ns, start_sample=0, rate=48_000.0):
    for b in range(blocks):
        sample = start_sample + b * 64
        clock.observe_audio_block(host0_ns + int((sample - start_sample) / rate * 1e9), sample)


def test_locks_steps_restarts_and_lost_locks_are_segments_that_never_smooth_time_away():
    clock = CanonicalClock(epoch_unix_s=0.0, step_threshold_ns=100_000)
    assert clock.state == ClockState.PROVISIONAL and clock.segment.reason == SegmentReason.START
    host0 = 1_000_000_000
    _feed(clock, 200, host0_ns=host0)
    # Device sample 0 (host 1 s) is canonical 1000 s.
    clock.set_fit(DeviceToCanonical(-48_000 * 1000.0, 48_000.0), now_ns=host0)
    assert clock.locked and clock.segment.reason == SegmentReason.LOCK and clock.relocks == 1
    lock_step = clock.segment.step_ns
    assert clock.segment.step_ns == clock.last_step_ns != 0  # provisional (wall clock) to witness: a real step
    # A refinement of a fraction of a sample stays in the segment ...
    clock.set_fit(DeviceToCanonical(-48_000 * 1000.0 + 0.5, 48_000.0), now_ns=host0)
    assert clock.segment.index == 1 and clock.last_step_ns == lock_step
    # ... a fit 10 samples away (208 us) is a step, recorded as such.
    clock.set_fit(DeviceToCanonical(-48_000 * 1000.0 + 10.5, 48_000.0), now_ns=host0)
    assert clock.segment.reason == SegmentReason.STEP and abs(clock.segment.step_ns + 10 / 48_000 * 1e9) < 1000
    # Another channel becomes the reference: a segment of its own, even for a step under the threshold.
    clock.set_fit(DeviceToCanonical(-48_000 * 1000.0 + 10.0, 48_000.0), now_ns=host0, new_reference=True)
    assert clock.segment.reason == SegmentReason.REFERENCE and abs(clock.segment.step_ns - 0.5 / 48_000 * 1e9) < 1000

    # The audio worker restarts: a new device counter. Canonical time holds its line: no jump at the switch.
    t = host0 + 5_000_000_000
    before = clock.from_host_ns(t)
    clock.stream_restarted(now_ns=t)
    assert clock.state == ClockState.HOLDOVER and not clock.locked and clock.stream == 1
    assert clock.segment.reason == SegmentReason.STREAM_RESTART and clock.segment.step_ns == 0
    assert abs(clock.from_host_ns(t) - before) <= 1
    assert abs(clock.from_host_ns(t + 1_000_000_000) - (before + 1_000_000_000)) < 1000  # the held line runs on
    # New stream: its blocks get canonical time from the held line until its own fit arrives.
    _feed(clock, 100, host0_ns=t + 10_000_000, start_sample=0)
    held = clock.from_device_sample(48_000, host_ns=0)
    assert abs(held - clock.from_host_ns(t + 10_000_000 + 1_000_000_000)) < 50_000
    # Its fit arrives 2 ms away from the held line: a LOCK segment records the measured 2 ms step.
    canonical_s_at_t = clock.from_host_ns(t + 10_000_000) / 1e9 + 0.002
    clock.set_fit(DeviceToCanonical(-canonical_s_at_t * 48_000.0, 48_000.0), now_ns=t + 10_000_000)
    assert clock.locked and clock.segment.reason == SegmentReason.LOCK and clock.relocks == 2
    assert abs(clock.segment.step_ns - 2_000_000) < 50_000

    # The reference loses its lock: holdover, again continuous.
    u = t + 20_000_000_000
    before = clock.from_host_ns(u)
    clock.lock_lost(now_ns=u)
    assert clock.state == ClockState.HOLDOVER and clock.segment.reason == SegmentReason.LOCK_LOST
    assert abs(clock.from_host_ns(u) - before) <= 1
    assert [s.index for s in clock.segments] == list(range(len(clock.segments)))


def test_driver_adc_times_map_blocks_tighter_than_callback_entry_under_injected_jitter(rig):
    """A synthetic device whose callbacks run up to 3 ms late: the host fit on ADC times (placed on the host clock
    by StreamToHost) stays on the device's true line; the fit on entry times carries the lateness."""
    import time

    from mimir.descriptors import AudioBlockRecord
    from mimir.timebase import StreamToHost
    from ringbuf import RingReader
    from workers.audio import AudioEngine, EngineConfig, parse_channels

    engine = AudioEngine(EngineConfig(backend="synthetic", rig=rig, channels=parse_channels("1"), ring_seconds=4.0,
                                      callback_jitter_us=3000.0))
    engine.init(48_000, 64)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        rows = []
        deadline = time.monotonic() + 20.0  # 1,500 blocks is 2 s of audio; a loaded machine may take longer
        while len(rows) < 1500 and time.monotonic() < deadline:
            item = reader.read(copy_payload=False)
            if item is None:
                time.sleep(0.01)
                continue
            rows.append(dict(zip(AudioBlockRecord.__struct_fields__, item.descriptor)))
        engine.stop()
    finally:
        reader.close()
        engine.shutdown()
    assert len(rows) > 1000
    to_host = StreamToHost()
    entry_fit, adc_fit = HostToDevice(), HostToDevice()
    for r in rows:
        entry_fit.add(r["host_time_ns"], r["start_sample"])
        adc_fit.add(to_host.host_of(r["adc_time_ns"], r["host_time_ns"], r["stream_time_ns"]), r["start_sample"])
    assert to_host.mode == "adc"

    def residual_us(fit, key):
        errors = [(fit.host_ns_at(r["start_sample"]) - key(r)) / 1e3 for r in rows]
        return float(np.sqrt(np.mean(np.square(errors))))

    adc_us = residual_us(adc_fit, lambda r: to_host.host_of(r["adc_time_ns"], r["host_time_ns"], r["stream_time_ns"]))
    entry_us = residual_us(entry_fit, lambda r: r["host_time_ns"])
    assert adc_us < 50 and entry_us > 300, (adc_us, entry_us)  # 3 ms of uniform lateness: ~0.9 ms rms


def test_camera_frame_timestamps_follow_the_device_clock_not_the_receipt_jitter():
    """Frames stamped by a device clock 50 ppm fast, from an arbitrary origin, received 1 ms + up to 4 ms late:
    the mapped host time of each frame sits on the device's line (plus the smallest latency), within 0.1 ms."""
    from mimir.timebase import DeviceTimeToHost, TimeSource

    rng = np.random.default_rng(7)
    mapper = DeviceTimeToHost()
    t0, period, ppm = 5_000_000_000, 16_666_667, 50e-6
    errors, receipt_errors = [], []
    for k in range(3000):
        device = 123_456_789_000 + k * period
        true_host = t0 + int(k * period * (1 + ppm))
        receipt = true_host + 1_000_000 + int(rng.uniform(0, 4_000_000))
        mapped = mapper.host_of(device, receipt)
        if k > 600:  # once the window has seen a frame received with the smallest latency
            errors.append(mapped - (true_host + 1_000_000))
            receipt_errors.append(receipt - (true_host + 1_000_000))
    assert mapper.source == TimeSource.DEVICE
    assert max(abs(e) for e in errors) < 100_000, max(abs(e) for e in errors)
    assert np.std(errors) * 10 < np.std(receipt_errors)
    assert mapper.host_of(0, 10_000_000) == 10_000_000 and mapper.source == TimeSource.RECEIPT


def test_a_remote_authority_is_followed_then_lost_back_to_the_local_reference_each_switch_a_measured_segment():
    """Selecting a remote canonical authority is an AUTHORITY segment with the step it made; while it rules, local
    fits are kept but never steer; losing it returns to the local fit, again an AUTHORITY segment with its step."""
    clock = CanonicalClock()
    t = 5_000_000_000
    _feed(clock, 200, host0_ns=t)
    local = DeviceToCanonical(-(t / 1e9) * 48_000.0, 48_000.0)  # local reference: canonical = host time
    clock.set_fit(local, now_ns=t)
    assert clock.locked and clock.authority == 0
    u = t + 1_000_000_000
    # The authority's line says canonical = host + 3 ms (its timeline is 3 ms ahead of the local reference).
    clock.follow_authority(2, (u, u + 3_000_000, 1.0), now_ns=u)
    assert clock.locked and clock.authority == 2 and clock.segment.reason == SegmentReason.AUTHORITY
    assert abs(clock.segment.step_ns - 3_000_000) < 50_000 and clock.segment.authority == 2
    assert clock.from_host_ns(u + 10_000_000) == u + 13_000_000
    clock.set_fit(DeviceToCanonical(local.local_sample_at_epoch - 480.0, 48_000.0), now_ns=u)  # a local refit
    assert clock.from_host_ns(u + 10_000_000) == u + 13_000_000 and clock.segment.reason == SegmentReason.AUTHORITY
    clock.follow_authority(2, (u, u + 3_020_000, 1.0), now_ns=u)  # a refinement under the step threshold
    assert clock.segment.reason == SegmentReason.AUTHORITY
    v = u + 2_000_000_000
    clock.authority_lost(now_ns=v)
    assert clock.locked and clock.authority == 0 and clock.segment.reason == SegmentReason.AUTHORITY
    assert clock.segment.authority == 0
    # back on the local fit as refitted meanwhile (10 ms = 480 samples later): the step is measured, not smoothed
    assert abs(clock.segment.step_ns - (10_000_000 - 3_020_000)) < 100_000


def test_an_authority_lost_without_a_local_fit_holds_its_line():
    clock = CanonicalClock()
    t = 5_000_000_000
    clock.follow_authority(1, (t, 42_000_000_000, 1.0), now_ns=t)
    clock.authority_lost(now_ns=t + 1_000_000_000)
    assert clock.state == ClockState.HOLDOVER and clock.segment.reason == SegmentReason.AUTHORITY
    assert clock.from_host_ns(t + 2_000_000_000) == 44_000_000_000  # the held line runs on
