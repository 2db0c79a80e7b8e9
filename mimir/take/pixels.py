"""Camera payloads <-> PyAV frames, per video encoding: what each encoding stores and how to get it back.

A camera payload is the uint8 array the ring holds: YUYV ``(h, w, 2)``,
GRBG (8-bit Bayer) and GREY ``(h, w)``, BGR3 ``(h, w, 3)``. Each encoding
hands the encoder one pixel format per payload layout:

========  ==================  ==================  ==================
payload   ffv1 (lossless)     raw (uncompressed)  h264 (lossy)
========  ==================  ==================  ==================
YUYV      yuv422p (repacked)  yuyv422 (as is)     yuv422p (libx264)
GRBG      gray                gray                gray (libx264)
GREY      gray                gray                gray (libx264)
BGR3      bgr0 (padded)       bgr24 (as is)       bgr24 (libx264rgb)
========  ==================  ==================  ==================

Every lossless mapping is a pure rearrangement of bytes: YUYV's
``Y0 U0 Y1 V0`` pairs split into a full-width Y plane and half-width U and
V planes (4:2:2 stays 4:2:2), BGR gains a fourth (zero) byte because FFV1
takes 8-bit RGB only as ``bgr0`` (it has no 8-bit ``gbrp`` input).
:func:`payload_from_frame` undoes it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np

__all__ = ["Layout", "layout", "frame_from_payload", "payload_from_frame", "frame_of_slot"]


@dataclass(frozen=True)
class Layout:
    """How one payload layout is handed to one encoder."""

    codec: str
    av_format: str
    lossless: bool
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


# FFV1 version 3, intra-only (every frame a key frame: any frame decodes alone, a truncated file loses
# nothing before its last whole frame), with a CRC per slice so corruption is detected, not decoded.
_FFV1 = {"level": "3", "g": "1", "slices": "4", "slicecrc": "1"}
# Ultrafast with zero latency: no B-frames, no look-ahead, so each frame's packet leaves the encoder at once
# (nothing waits in the encoder when the process dies).
_H264 = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18"}

_LAYOUTS: dict[tuple[str, str], Layout] = {
    ("ffv1", "YUYV"): Layout("ffv1", "yuv422p", True, _FFV1),
    ("ffv1", "GRBG"): Layout("ffv1", "gray", True, _FFV1),
    ("ffv1", "GREY"): Layout("ffv1", "gray", True, _FFV1),
    ("ffv1", "BGR3"): Layout("ffv1", "bgr0", True, _FFV1),
    # Matroska stores raw RGB only in VFW mode (FFmpeg refuses it otherwise); the muxer then tags it BI_RGB.
    ("raw", "YUYV"): Layout("rawvideo", "yuyv422", True),
    ("raw", "GRBG"): Layout("rawvideo", "gray", True),
    ("raw", "GREY"): Layout("rawvideo", "gray", True),
    ("raw", "BGR3"): Layout("rawvideo", "bgr24", True, container_options={"allow_raw_vfw": "1"}),
    ("h264", "YUYV"): Layout("libx264", "yuv422p", False, _H264),
    ("h264", "GRBG"): Layout("libx264", "gray", False, _H264),
    ("h264", "GREY"): Layout("libx264", "gray", False, _H264),
    ("h264", "BGR3"): Layout("libx264rgb", "bgr24", False, _H264),
}


def layout(encoding: str, pixel_format: str) -> Layout:
    try:
        return _LAYOUTS[(encoding, pixel_format)]
    except KeyError:
        raise ValueError(f"no video layout for encoding {encoding!r} and pixel format {pixel_format!r}") from None


def _plane(frame: av.VideoFrame, index: int, width_bytes: int) -> np.ndarray:
    """Writable view ``(height, width_bytes)`` of one plane (its rows may be padded to ``line_size``)."""
    plane = frame.planes[index]
    # memoryview: the same writable buffer; PyAV's Plane is a buffer numpy's stubs only see from Python 3.12 on.
    return np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[:, :width_bytes]


def frame_from_payload(payload: np.ndarray, av_format: str) -> av.VideoFrame:
    """A new PyAV frame in ``av_format`` holding ``payload`` (copied; the payload may be reused at once)."""
    h, w = payload.shape[:2]
    frame = av.VideoFrame(w, h, av_format)
    if av_format == "yuv422p":  # YUYV: Y0 U0 Y1 V0 -> planes Y, U, V
        _plane(frame, 0, w)[:] = payload[:, :, 0]
        _plane(frame, 1, w // 2)[:] = payload[:, 0::2, 1]
        _plane(frame, 2, w // 2)[:] = payload[:, 1::2, 1]
    elif av_format == "gray":
        _plane(frame, 0, w)[:] = payload
    elif av_format in ("yuyv422", "bgr24"):
        _plane(frame, 0, payload.shape[2] * w)[:] = payload.reshape(h, -1)
    elif av_format == "bgr0":
        padded = _plane(frame, 0, 4 * w).reshape(h, w, 4)
        padded[:, :, :3] = payload
        padded[:, :, 3] = 0
    else:
        raise ValueError(f"unsupported encoder pixel format {av_format!r}")
    return frame


def payload_from_frame(frame: av.VideoFrame, pixel_format: str) -> np.ndarray:
    """The payload array (``pixel_format`` layout) a decoded frame holds; exact for every lossless layout."""
    h, w = frame.height, frame.width
    name = frame.format.name
    if pixel_format == "YUYV":
        if name == "yuyv422":
            return _plane(frame, 0, 2 * w).reshape(h, w, 2).copy()
        if name not in ("yuv422p", "yuvj422p"):
            frame = frame.reformat(format="yuv422p")
        out = np.empty((h, w, 2), np.uint8)
        out[:, :, 0] = _plane(frame, 0, w)
        out[:, 0::2, 1] = _plane(frame, 1, w // 2)
        out[:, 1::2, 1] = _plane(frame, 2, w // 2)
        return out
    if pixel_format in ("GRBG", "GREY"):
        # H.264 stores grey as 4:0:0, which FFmpeg's decoder hands out as yuv420p with flat chroma: the luma
        # plane is the data. Reformatting to "gray" instead would rescale it from video range to full range.
        if name != "gray" and not name.startswith("yuv"):
            frame = frame.reformat(format="gray")
        return _plane(frame, 0, w).copy()
    if pixel_format == "BGR3":
        if name == "bgr0":
            return _plane(frame, 0, 4 * w).reshape(h, w, 4)[:, :, :3].copy()
        if name != "bgr24":
            frame = frame.reformat(format="bgr24")
        return _plane(frame, 0, 3 * w).reshape(h, w, 3).copy()
    raise ValueError(f"unknown pixel format {pixel_format!r}")


def frame_of_slot(slot: np.ndarray, shape: tuple[int, ...], stride_bytes: int) -> np.ndarray:
    """A ring slot's payload as a camera frame array of ``shape`` (a view wherever the layouts agree).

    Rings may hold a frame as rows of ``stride_bytes`` (padding at the end of
    each row) or flat; the take wants ``(h, w[, c])`` without padding.
    """
    if slot.shape == shape:
        return slot
    flat = slot.reshape(-1)
    size = int(np.prod(shape))
    if flat.size == size:
        return flat.reshape(shape)
    height = shape[0]
    row_bytes = size // height
    rows = flat[: height * stride_bytes].reshape(height, stride_bytes)
    return rows[:, :row_bytes].reshape(shape)
