"""The rooms section's summary and table: both methods' errors per goal group, and both speeds (whole, locked)."""
from bench.sync_rooms import _G1, format_rooms, summarise_rooms


def _trial(err: float, speed: float, sustained: float) -> dict:
    return {"error_samples": err, "confidence": 0.9, "baseline_error_samples": 60.0, "baseline_confidence": 0.9,
            "rate_error_ppm": 0.01, "x_realtime": speed, "baseline_x_realtime": 2 * speed,
            "x_realtime_sustained": sustained, "baseline_x_realtime_sustained": 2 * sustained,
            "goal_group": f"{_G1}, image"}


def test_the_table_gives_whole_trial_and_locked_speeds_and_judges_the_goal():
    groups = summarise_rooms([_trial(0.1, 60.0, 90.0), _trial(0.2, 80.0, 110.0)])
    image = groups[f"{_G1}, image"]
    assert (image["x_realtime_p50"], image["x_realtime_sustained_p50"]) == (70.0, 100.0)
    assert image["goal_met"] and image["envelope_peak_confident_wrong"] == 2  # 60 smp > 1 ms at confidence 0.9
    table = format_rooms({"groups": groups})
    assert "| 70 / 140 | 100 / 200 |" in table and "x realtime p50, 2nd half" in table
