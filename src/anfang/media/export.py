"""A downloaded recording as a traceable export: every frame carries a visible line naming the exporter and the
time (re-encoded with PyAV / libx264: a visible mark cannot be added to H.264 without decoding it), the MP4's
metadata carries the export fingerprint that ``anfang trace`` reads, and the export log records the file."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

from anfang.security.scope import Principal
from anfang.security.watermark import Mark, log_export, new_mark
from anfang.store.engine import Store


def _overlay(mark: Mark, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (text, shadow) of the visible line for a frame of this size: drawn once, applied to every frame."""
    from PIL import Image, ImageDraw

    from anfang.security.watermark import _font

    size = max(10, height // 22)
    font, cjk = _font(size)
    text = f"{mark.display_name} {mark.short_line()}" if cjk else mark.short_line()
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    y = height - size - max(4, height // 60)
    draw.text((max(4, width // 80), y), text, fill=255, font=font)
    draw.text((max(4, width // 80), max(4, height // 40) + height // 12), mark.request_id, fill=255, font=font)
    text_mask = np.asarray(img) > 127
    shadow = np.zeros_like(text_mask)
    shadow[1:, 1:] = text_mask[:-1, :-1]
    return text_mask, shadow & ~text_mask


def watermark_video(src: Path, dst: Path, mark: Mark) -> int:
    """Re-encode ``src`` (any MP4 / fMP4 with an H.264 or H.265 track) to ``dst`` with the visible line on every
    frame and the fingerprint in the metadata. Returns the number of frames written."""
    frames = 0
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        rate = vin.average_rate or fractions.Fraction(25)
        with av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
            out.metadata["comment"] = mark.meta_keywords()
            out.metadata["title"] = mark.visible_line()
            out.metadata["description"] = mark.visible_line()
            vout = None
            masks = None
            for frame in inp.decode(video=0):
                if vout is None:
                    vout = out.add_stream("libx264", rate=rate)
                    vout.width, vout.height, vout.pix_fmt = frame.width, frame.height, "yuv420p"
                    vout.options = {"preset": "veryfast", "crf": "26"}
                    masks = _overlay(mark, frame.width, frame.height)
                yuv = frame.to_ndarray(format="yuv420p")
                text, shadow = masks  # type: ignore[misc]
                luma = yuv[: frame.height]
                luma[shadow] = 16
                luma[text] = 235
                picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                picture.pts = frames
                picture.time_base = 1 / fractions.Fraction(rate)
                for packet in vout.encode(picture):
                    out.mux(packet)
                frames += 1
            if vout is not None:
                for packet in vout.encode(None):
                    out.mux(packet)
    return frames


def export_recording(store: Store, p: Principal, src: Path, dst: Path, *, channel_id: str, start: str, end: str,
                     reason: str | None = None, approval_id: int | None = None) -> tuple[Mark, int]:
    """Watermark a downloaded recording and log it as an export (kind ``video-download``)."""
    mark = new_mark(store, p, "video-download", "mp4", dst.name, reason=reason, approval_id=approval_id,
                    filters={"channel_id": channel_id, "start": start, "end": end})
    frames = watermark_video(src, dst, mark)
    log_export(store, mark, rows=frames, row_keys=[channel_id])
    return mark, frames
