"""Trust policy, sequence window and backlog: the pure pieces."""

from __future__ import annotations

import pytest

from mimir.net.backlog import Backlog
from mimir.net.seqwindow import SeqWindow
from mimir.net.trust import TRUST_LEVELS, UNKNOWN_KEY, decide, rank


def _locked(level, influence_at="trusted-evidence", **kw):
    args = dict(influence_at=influence_at, fit_locked=True, fit_confidence=0.9, fit_age_s=0.2, codebook_matches=True)
    args.update(kw)
    return decide(level, **args)


def test_levels_and_threshold():
    assert [rank(x) for x in TRUST_LEVELS] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        rank("root")
    assert not _locked("reject").accepts_connection
    assert not UNKNOWN_KEY.accepts_connection and UNKNOWN_KEY.reason == "unknown key"
    assert [_locked(x).influences_canonical for x in TRUST_LEVELS] == [False, False, False, True, True]
    assert [_locked(x, "candidate-evidence").influences_canonical for x in TRUST_LEVELS] == [False, False, True,
                                                                                            True, True]
    assert [_locked(x).evidence_class for x in TRUST_LEVELS] == ["none", "none", "candidate", "trusted", "trusted"]
    assert _locked("canonical-authority").canonical_authority
    assert not _locked("trusted-evidence").canonical_authority


def test_influence_needs_a_fresh_confident_fit_of_our_codebook():
    assert not _locked("trusted-evidence", fit_locked=False).influences_canonical
    assert not _locked("trusted-evidence", fit_confidence=0.2).influences_canonical
    assert not _locked("trusted-evidence", fit_age_s=60.0).influences_canonical
    assert not _locked("trusted-evidence", fit_age_s=None).influences_canonical
    wrong = _locked("canonical-authority", codebook_matches=False)
    assert not wrong.influences_canonical and not wrong.emits_evidence and not wrong.canonical_authority
    assert _locked("trusted-evidence", codebook_matches=None).influences_canonical  # not checked


def test_seq_window_duplicates_reordering_and_losses():
    w = SeqWindow(window=100)
    assert w.offer(0, 0) == "new"
    assert w.offer(2, 0) == "new"       # 1 is late
    assert w.offer(1, 0) == "new" and w.reordered == 1 and w.through == 2
    assert w.offer(1, 0) == "duplicate"
    assert w.offer(5, 4) == "new"       # sender gave up on 3 (never arrived): lost; 4 pending
    assert (w.lost, w.through) == (1, 3)
    assert w.offer(4, 4) == "new" and w.through == 5
    assert w.offer(500, 450) == "new"   # low-water jumps: 6..449 lost
    assert w.lost == 1 + 444
    assert w.offer(1000, 450) == "out_of_window"


def test_seq_window_joining_mid_session_counts_no_loss():
    w = SeqWindow()
    assert w.offer(120, 95) == "new"
    assert (w.through, w.lost) == (94, 0)
    assert w.offer(95, 95) == "new" and w.offer(96, 95) == "new"
    assert w.offer(94, 94) == "duplicate"


def test_backlog_bounds_evict_oldest_and_count():
    b = Backlog(max_messages=3, max_bytes=10_000)

    def make(seq, low):
        return f"{seq}:{low}".encode().ljust(10)

    for _ in range(5):
        b.add(make)
    s = b.stats()
    assert (s.messages, s.dropped_messages, s.dropped_bytes) == (3, 2, 20)
    due = b.due(now_ns=10, retransmit_after_ns=100, limit=10)
    # every copy carries the current low-water mark (2: the oldest still held)
    assert [d[1].strip() for d in due] == [b"2:2", b"3:2", b"4:2"]
    for seq, _, _ in due:
        b.mark_sent(seq, 10)
    assert b.due(now_ns=50, retransmit_after_ns=100, limit=10) == []
    assert [d[0] for d in b.due(now_ns=200, retransmit_after_ns=100, limit=10)] == [2, 3, 4]
    assert b.ack(3) == 2 and len(b) == 1
    b.mark_all_due()
    assert [(d[1].strip(), d[2]) for d in b.due(now_ns=51, retransmit_after_ns=100, limit=10)] == [(b"4:4", True)]
    big = Backlog(max_messages=10, max_bytes=15)
    big.add(lambda s, low: b"y" * 20)
    assert big.stats().dropped_messages == 1 and len(big) == 0


# ---- boundaries: each comparison of the trust policy sits exactly on its threshold here ---------------------------
@pytest.mark.parametrize("level", TRUST_LEVELS[1:])
def test_a_source_exactly_at_influence_at_influences_and_one_level_below_does_not(level):
    assert _locked(level, influence_at=level).influences_canonical
    below = TRUST_LEVELS[rank(level) - 1]
    if below != "reject":
        decision = _locked(below, influence_at=level)
        assert not decision.influences_canonical and f"below influence_at = {level}" in decision.reason


def test_a_fit_exactly_at_min_confidence_influences_and_just_below_does_not():
    assert _locked("trusted-evidence", fit_confidence=0.5, min_confidence=0.5).influences_canonical
    low = _locked("trusted-evidence", fit_confidence=0.4999999, min_confidence=0.5)
    assert not low.influences_canonical and "fit confidence" in low.reason


def test_a_fit_exactly_max_fit_age_old_influences_and_just_older_does_not():
    assert _locked("trusted-evidence", fit_age_s=10.0, max_fit_age_s=10.0).influences_canonical
    old = _locked("trusted-evidence", fit_age_s=10.000001, max_fit_age_s=10.0)
    assert not old.influences_canonical and "s old" in old.reason
