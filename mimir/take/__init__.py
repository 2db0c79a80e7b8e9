"""Take folders: cameras, audio and an XDF file of one canonical span, written to disk and read back.

Writer (a recorder or snapshot process, never a capture process)::

    from mimir.take import TakeWriter, CameraSource, AudioSource, ClockSegment

    with TakeWriter(out_dir, [CameraSource("cam0", 640, 480, "YUYV", 60.0),
                              AudioSource("mic", 2, 48_000, "float32")], rig=config) as take:
        take.write_frame("cam0", payload, canonical_ns, sequence=seq, device_time_ns=d, host_time_ns=h)
        take.write_audio("mic", block, canonical_ns, start_sample=s)

Reader and repair::

    from mimir.take import open_take, repair
    take = open_take(out_dir); take.frames("cam0"); take.audio("mic"); take.xdf()
    repair(out_dir)   # after a crash: rebuild manifest.json from the files

The package knows nothing about rings, the supervisor or the reservoir: it
takes numpy arrays and integer canonical times. The folder format is in
``docs/take.md``.
"""

from .errors import DiskFull, NotATake, TakeClosed, TakeError, TakeExists
from .manifest import (
    MANIFEST_NAME,
    PIXEL_FORMATS,
    SAMPLE_FORMATS,
    VIDEO_ENCODINGS,
    AudioSource,
    CameraSource,
    ClockSegment,
    FileEntry,
    Gap,
    Manifest,
    Missing,
    Skip,
    Source,
    SourceRecord,
    Span,
    read_manifest,
)
from .read import AudioRun, Frames, Take, open_take
from .repair import repair
from .writer import TakeWriter

__all__ = [
    "TakeWriter", "open_take", "repair", "Take", "Frames", "AudioRun",
    "CameraSource", "AudioSource", "Source", "ClockSegment", "Manifest", "SourceRecord", "FileEntry", "Span", "Skip",
    "Gap", "Missing", "read_manifest", "MANIFEST_NAME", "PIXEL_FORMATS", "SAMPLE_FORMATS", "VIDEO_ENCODINGS",
    "TakeError", "TakeExists", "DiskFull", "TakeClosed", "NotATake",
]
