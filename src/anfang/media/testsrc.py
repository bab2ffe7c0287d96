"""Test sources: a moving test pattern encoded once with PyAV (libx264 / libx265), and an RTP/PS sender that
plays it like a GB/T 28181 camera over UDP, TCP active or TCP passive (RFC 4571), with optional loss/reorder."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np

from anfang.media import nal
from anfang.media.ps import EsFrame

_CACHE: dict[tuple[str, int, int, int, int, int, float], list[EsFrame]] = {}
_LOCK = threading.Lock()
TICKS = 90_000


def _pattern(width: int, height: int, i: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """One yuv420p frame as a (h*3/2, w) array: a gradient, a box moving left to right, a frame counter bar
    and some texture so the encoder spends bits the way it would on a real scene."""
    y = np.empty((height, width), dtype=np.uint8)
    y[:] = (np.arange(width, dtype=np.uint16) * 200 // max(width - 1, 1) + 16).astype(np.uint8)
    box = max(height // 4, 8)
    x0 = (i * max(width // (fps * 2), 2)) % max(width - box, 1)
    y0 = height // 2 - box // 2
    y[y0:y0 + box, x0:x0 + box] = 235
    bar_h = max(height // 20, 4)
    bits = i & 0xFF
    cell = width // 8
    for b in range(8):  # the frame number in binary, so a decoder can tell frames apart
        y[:bar_h, b * cell:(b + 1) * cell] = 235 if bits >> (7 - b) & 1 else 16
    tex_h = height // 4
    y[height - tex_h:] = rng.integers(16, 236, size=(tex_h, width), dtype=np.uint8)
    uv = np.full((height // 2, width), 128, dtype=np.uint8)
    uv[: height // 4, : width // 2] = (64 + 4 * i) % 256  # U drifts so the colour changes too
    return np.concatenate([y, uv])


def clip(codec: str = "h264", width: int = 640, height: int = 360, fps: int = 25, bitrate: int = 1_000_000,
         gop: int = 25, seconds: float = 2) -> list[EsFrame]:
    """A test-pattern clip as Annex B access units (no B-frames, so decode order = display order).

    The first frame is an IDR, and every keyframe carries its parameter sets (SPS/PPS, plus VPS for H.265).
    PTS are 90 kHz from 0. Encoded once per argument set and cached in memory."""
    if codec not in nal.CODECS:
        raise ValueError(f"unsupported codec {codec!r}")
    key = (codec, width, height, fps, bitrate, gop, float(seconds))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _encode(*key)
        return list(_CACHE[key])


def _encode(codec: str, width: int, height: int, fps: int, bitrate: int, gop: int,
            seconds: float) -> list[EsFrame]:
    kbit = max(bitrate // 1000, 1)
    if codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1",
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:"
                                      f"vbv-maxrate={kbit}:vbv-bufsize={kbit}:repeat-headers=1"}
    else:
        ctx = av.CodecContext.create("libx265", "w")
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:"
                                      f"repeat-headers=1:log-level=error:vbv-maxrate={kbit}:vbv-bufsize={kbit}"}
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    ctx.thread_count = 2
    rng = np.random.default_rng(15)
    n = max(int(round(seconds * fps)), 1)
    packets: list[av.Packet] = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(_pattern(width, height, i, fps, rng), format="yuv420p")
        frame.pts = i
        frame.time_base = ctx.time_base
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    frames: list[EsFrame] = []
    for i, pkt in enumerate(packets):
        data = bytes(pkt)
        pts = (pkt.pts if pkt.pts is not None else i) * TICKS // fps
        frames.append(EsFrame(codec, pts, data, nal.is_keyframe(data, codec)))
    frames.sort(key=lambda f: f.pts or 0)
    return frames
