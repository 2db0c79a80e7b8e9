"""The report's JSON wire names are fixed: seed 003's names, and the project's additions, exactly.

Python attributes carry the project's vocabulary (``rate_hz``, ``mae_samples``,
``canonical_s``...); the JSON keeps the spec's camelCase names. Every key of
every object of a real report (a locked receiver, so each part is filled)
is compared with the fixed lists below, in order.
"""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from mimir.sync import Codebook, StreamingReceiver, WitnessEmitter
from mimir.sync.calibration import PathCalibration
from mimir.sync.report import ClockFitReport, SyncReport, encode_report

RATE = 48000

# Seed 003 ("Receiver Output"), verbatim: the names a remote receiver's report must carry.
SEED_003_EXAMPLE = """{
  "sourceId": "phone-left",
  "codebookId": "main-room-2026-05-24",
  "canonicalClockFit": {
    "localSampleAtEpoch": 12345678.5,
    "effectiveSampleRate": 47999.92,
    "confidence": 0.91,
    "meanAbsErrorSamples": 0.37
  },
  "anchors": [],
  "responseProfile": {},
  "health": {}
}"""
SEED_003_TOP = ["sourceId", "codebookId", "canonicalClockFit", "anchors", "responseProfile", "health"]
SEED_003_FIT = ["localSampleAtEpoch", "effectiveSampleRate", "confidence", "meanAbsErrorSamples"]

# The whole wire format (seed 003's names plus the project's additions, docs/sync.md "Report").
TOP = ["sourceId", "codebookId", "seed", "nominalSampleRate", "locked", "status", "canonicalClockFit", "anchors",
       "responseProfile", "health", "segments", "discontinuities", "warnings"]
FIT = ["localSampleAtEpoch", "effectiveSampleRate", "confidence", "meanAbsErrorSamples", "offsetSigmaSamples",
       "rateSigmaPpm", "anchorCount", "firstCanonicalSeconds", "lastCanonicalSeconds", "pathDelaySeconds", "reference"]
ANCHOR = ["eventIndex", "canonicalSeconds", "localSample", "confidence", "symbols", "residualSamples"]
RESPONSE = ["bands", "symbols", "eventsChecked", "confusionRate", "path"]
BAND = ["lowHz", "highHz", "gainDb", "reliability", "timingResidualSamples"]
SYMBOL = ["symbol", "count", "reliability", "meanScore", "timingResidualSamples"]
PATH = ["events", "firstArrivalOffsetSamples", "strongestArrivalOffsetSamples", "strongestMinusDirectSamples",
        "strongestMinusDirectMs", "directToStrongestDb", "firstArrivalSnrDb", "firstArrivalSigmaSamples",
        "directToReverberantDb", "rt60Seconds", "rt60Method", "quality", "ambiguous", "notes", "pathDelaySamples",
        "directPathLocalSampleAtEpoch", "strongestPathLocalSampleAtEpoch"]
HEALTH = ["state", "samplesConsumed", "nonFiniteSamples", "gapSamples", "proposals", "candidatesScored",
          "hypothesesSpawned", "anchorsAccepted", "anchorsRejected", "eventsMissed", "locks", "relocks",
          "lockRejections", "discontinuities", "templateRateUpdates"]
SEGMENT = ["startLocalSample", "localSampleAtEpoch", "effectiveSampleRate", "anchorCount", "endLocalSample"]
DISCONTINUITY = ["localSample", "kind", "jumpSamples"]


@pytest.fixture(scope="module")
def locked_report() -> SyncReport:
    """A receiver locked on 12 s of clean witness with a path calibration, and a clock reset (a discontinuity)."""
    t0 = 321.0
    audio = WitnessEmitter(Codebook(), RATE, t0, level_dbfs=-20.0).render(0, 12 * RATE)
    audio = audio + np.random.default_rng(3).normal(0.0, 1e-3, audio.size).astype(np.float32)
    rx = StreamingReceiver(Codebook(), RATE, "phone-left", path=PathCalibration(distance_m=2.0))
    rx.feed(audio)
    rx.feed(audio[: 3 * RATE], start_sample=0)  # behind the stream: a local clock reset
    return rx.report()


def test_the_seed_example_decodes_into_the_projects_names():
    fit = msgspec.json.decode(json.dumps(json.loads(SEED_003_EXAMPLE)["canonicalClockFit"]), type=ClockFitReport)
    assert (fit.local_sample_at_epoch, fit.rate_hz, fit.confidence, fit.mae_samples) == (12345678.5, 47999.92, 0.91,
                                                                                          0.37)


def test_a_report_encodes_to_exactly_the_wire_names(locked_report):
    doc = json.loads(encode_report(locked_report))
    assert list(doc) == TOP and [k for k in TOP if k in SEED_003_TOP] == SEED_003_TOP
    assert list(doc["canonicalClockFit"]) == FIT and FIT[:4] == SEED_003_FIT
    assert doc["anchors"] and all(list(a) == ANCHOR for a in doc["anchors"])
    response = doc["responseProfile"]
    assert list(response) == RESPONSE
    assert response["bands"] and all(list(b) == BAND for b in response["bands"])
    assert response["symbols"] and all(list(s) == SYMBOL for s in response["symbols"])
    assert list(response["path"]) == PATH
    assert list(doc["health"]) == HEALTH
    assert doc["segments"] and all(list(s) == SEGMENT for s in doc["segments"])
    assert doc["discontinuities"] and all(list(d) == DISCONTINUITY for d in doc["discontinuities"])


def test_wire_values_are_the_attributes_under_their_wire_names(locked_report):
    rep = locked_report
    doc = json.loads(encode_report(rep))
    fit, wire = rep.canonical_clock_fit, doc["canonicalClockFit"]
    assert rep.locked and fit.rate_hz is not None and fit.mae_samples is not None
    assert wire["effectiveSampleRate"] == fit.rate_hz and wire["meanAbsErrorSamples"] == fit.mae_samples
    assert wire["localSampleAtEpoch"] == fit.local_sample_at_epoch
    assert wire["firstCanonicalSeconds"] == fit.first_canonical_s and wire["lastCanonicalSeconds"] == fit.last_canonical_s
    assert wire["pathDelaySeconds"] == fit.path_delay_s == pytest.approx(2.0 / 343.0)
    assert doc["nominalSampleRate"] == rep.nominal_rate_hz == RATE
    assert doc["anchors"][-1]["canonicalSeconds"] == rep.anchors[-1].canonical_s
    assert doc["segments"][0]["effectiveSampleRate"] == rep.segments[0].rate_hz
    assert doc["responseProfile"]["path"]["rt60Seconds"] == rep.response_profile.path.rt60_s
    assert msgspec.json.decode(encode_report(rep), type=SyncReport) == rep  # the names round-trip
