"""The Chinese TrueType font the PDFs and images use (door-plate sheets, watermarks, reports, the demo's plate
pictures): found on the machine at run time (Debian: ``fonts-wqy-microhei``), or named by ``ANFANG_CJK_FONT``.
One floor below everything that draws text, so none of them imports another for it."""

from __future__ import annotations

import os
from pathlib import Path

from anfang.core.errors import AnfangError

FONT_ENV = "ANFANG_CJK_FONT"
# (path, index in a .ttc collection); first found wins.
FONT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # index 2: Simplified Chinese
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
    ("C:/Windows/Fonts/msyh.ttc", 0),
    ("/System/Library/Fonts/PingFang.ttc", 0),
)


class FontMissing(AnfangError):
    status = 500
    code = "font_missing"


def find_cjk_font() -> tuple[Path, int]:
    """(font file, index in a .ttc collection); FontMissing says what to install when there is none."""
    explicit = os.environ.get(FONT_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FontMissing(f"{FONT_ENV} 指向的字体文件不存在：{path} / font file not found")
        return path, 0
    for name, index in FONT_CANDIDATES:
        if Path(name).is_file():
            return Path(name), index
    raise FontMissing("找不到中文字体，无法生成 PDF 门牌表。请安装 fonts-wqy-microhei"
                      f"（apt-get install fonts-wqy-microhei）"
                      f"或用 {FONT_ENV} 指定 TTF/TTC 字体文件。/ No Chinese font found for the PDF sheet: install "
                      f"fonts-wqy-microhei or set {FONT_ENV} to a TTF/TTC file.")


__all__ = ["FONT_CANDIDATES", "FONT_ENV", "FontMissing", "find_cjk_font"]
