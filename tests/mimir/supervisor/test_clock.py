"""Canonical clock composition against a known truth."""
import numpy as np

from mimir.supervisor.clock import CanonicalClock, ClockState, DeviceToCanonical, HostToDevice, SegmentReason


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
