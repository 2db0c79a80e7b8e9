"""Which channel defines canonical time: declared, or found as the earliest clean locked channel."""

import numpy as np

from mimir.supervisor.reference import GRACE_S, ReferenceChooser
from mimir.descriptors import FitRow
from ringbuf import dtype_of

NOW_S = 29_000_000.0
RATE = 48_000.0


def rows(*channels, decoded_s: float = 10.0):
    """Fit rows: (locked, path delay in samples vs the loopback, confidence, mae) per channel; ``decoded_s`` of audio
    consumed by the sync worker."""
    out = np.zeros(len(channels), dtype_of(FitRow))
    out["samples_consumed"] = round(decoded_s * RATE)
    for c, (locked, delay, confidence, mae) in enumerate(channels):
        out[c]["channel"] = c
        out[c]["locked"] = int(locked)
        out[c]["rate_hz"] = RATE
        out[c]["local_sample_at_epoch"] = -NOW_S * RATE + 1_000_000 + delay
        out[c]["confidence"] = confidence
        out[c]["mae_samples"] = mae
    return out


def test_the_loopback_on_channel_2_of_4_is_found_as_the_earliest_clean_channel():
    chooser = ReferenceChooser()
    scarlett = rows((True, 84.0, 0.97, 0.02), (True, 154.0, 0.95, 0.05), (True, 0.0, 0.99, 0.0),
                    (False, 0.0, 0.0, 0.0))
    assert chooser.choose(scarlett, NOW_S).channel is None  # Loopback 2 may lock yet: the grace
    scarlett["samples_consumed"] += round(GRACE_S * RATE)
    choice = chooser.choose(scarlett, NOW_S)
    assert choice.channel == 2 and not choice.declared and "earliest by 84.0 smp" in choice.why


def test_a_declared_reference_wins_and_microphones_are_never_found():
    assert ReferenceChooser(declared=3).choose(rows((True, 0.0, 1.0, 0.0)), NOW_S).channel == 3
    roles = ("microphone", "line", "unused")
    choice = ReferenceChooser(roles=roles).choose(rows((True, 0.0, 1.0, 0.0), (True, 12.0, 0.99, 0.1),
                                                        (True, 0.0, 1.0, 0.0)), NOW_S)
    assert choice.channel == 1  # the microphone heard it first, but may not define time


def test_no_clean_channel_means_no_reference_and_says_why():
    choice = ReferenceChooser().choose(rows((True, 0.0, 0.6, 2.5), (False, 0.0, 0.0, 0.0)), NOW_S)
    assert choice.channel is None and "not clean" in choice.why and "mae 2.50" in choice.why


def test_a_tied_stereo_loopback_pair_takes_the_cleaner_and_a_found_reference_is_kept_while_locked():
    chooser = ReferenceChooser()
    pair = rows((True, 40.0, 0.99, 0.1), (True, 0.3, 0.99, 0.08), (True, 0.0, 0.99, 0.2))
    assert chooser.choose(pair, NOW_S).channel == 1  # ch1 and ch2 tie within 0.5 smp: ch1 is cleaner
    pair[2]["mae_samples"] = 0.0
    assert chooser.choose(pair, NOW_S).channel == 1  # kept while it holds its lock
    pair[1]["locked"] = 0
    assert chooser.choose(pair, NOW_S).channel == 2


def test_the_first_choice_waits_for_the_other_candidates_then_at_most_the_grace_of_audio():
    """Found in CI: a microphone locked before the loopback, was found, and defined canonical time for good. The
    first choice waits until every channel that may be a reference is a clean lock, or GRACE_S of audio decoded
    after the first clean lock -- audio, not wall-clock time: a sync worker behind under load is not a reason."""
    chooser = ReferenceChooser()
    mic_first = rows((True, 84.0, 0.97, 0.02), (False, 0.0, 0.0, 0.0), (False, 0.0, 0.0, 0.0))
    choice = chooser.choose(mic_first, NOW_S)
    assert choice.channel is None and "waiting up to 3 s of audio for ch1, ch2" in choice.why
    later = rows((True, 84.0, 0.97, 0.02), (False, 0.0, 0.0, 0.0), (False, 0.0, 0.0, 0.0), decoded_s=10 + GRACE_S - 0.1)
    assert chooser.choose(later, NOW_S + 60.0).channel is None  # a minute passed, but not 3 s of audio decoded
    done = rows((True, 84.0, 0.97, 0.02), (False, 0.0, 0.0, 0.0), (False, 0.0, 0.0, 0.0), decoded_s=10 + GRACE_S)
    assert chooser.choose(done, NOW_S).channel == 0  # an input with nothing on it never locks
    fresh = ReferenceChooser()
    assert fresh.choose(mic_first, NOW_S).channel is None
    all_locked = rows((True, 84.0, 0.97, 0.02), (True, 154.0, 0.95, 0.05), (True, 0.0, 0.99, 0.0))
    assert fresh.choose(all_locked, NOW_S).channel == 2  # everyone locked: no need to wait


def test_a_fresh_lock_not_yet_clean_is_waited_for_too():
    """The loopback's first fits after its lock can be rough (few anchors): it is waited for like an unlocked one."""
    chooser = ReferenceChooser()
    rough = rows((True, 84.0, 0.97, 0.02), (True, 0.0, 0.95, 0.8))
    choice = chooser.choose(rough, NOW_S)
    assert choice.channel is None and "ch1 to lock cleanly" in choice.why
    assert chooser.choose(rows((True, 84.0, 0.97, 0.02), (True, 0.0, 0.99, 0.05), decoded_s=11.0), NOW_S).channel == 1


def test_a_found_reference_gives_way_to_a_clean_channel_heard_earlier_and_says_so():
    chooser = ReferenceChooser()
    assert chooser.choose(rows((True, 84.0, 0.97, 0.02), (False, 0.0, 0.0, 0.0)), NOW_S).channel is None
    late = rows((True, 84.0, 0.97, 0.02), (False, 0.0, 0.0, 0.0), decoded_s=10 + GRACE_S)
    assert chooser.choose(late, NOW_S).channel == 0
    heard = rows((True, 84.0, 0.97, 0.02), (True, 0.0, 0.99, 0.01), decoded_s=20.0)
    choice = chooser.choose(heard, NOW_S + 1)
    assert choice.channel == 1 and "replacing ch0 (heard later)" in choice.why
    tied = rows((True, 84.0, 0.97, 0.02), (True, 0.0, 0.99, 0.3), (True, 0.4, 0.99, 0.0), decoded_s=21.0)
    assert chooser.choose(tied, NOW_S + 2).channel == 1  # within the tie: no flapping
