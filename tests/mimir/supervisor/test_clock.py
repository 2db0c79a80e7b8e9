"""Canonical clock composition against a known truth."""
import numpy as np

from mimir.supervisor.clock import CanonicalClock, DeviceToCanonical, HostToDevice


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
