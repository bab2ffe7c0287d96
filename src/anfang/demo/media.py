"""Pictures for the demo, from the installed packages alone (nothing under ../shared, nothing fetched):

- the watchlisted person: the photograph of astronaut Eileen Collins that scikit-image ships as
  ``skimage/data/astronaut.png`` — a NASA photograph, "no known copyright restrictions, released into the public
  domain" (scikit-image's ``skimage.data.astronaut`` docstring). It is read as a file: skimage is not imported.
  Her enrolment photo and the camera's captures of her are different crops, scales and exposures of it, so the
  match is a real dlib comparison of two different images, not of one file with itself;
- everyone else: faces drawn here (head, hair, eyes, brows, nose, mouth, clothes, a wall behind), varied by seed,
  with a camera's blur and noise — they look like face captures and match nobody;
- vehicles: a 闽G number plate (blue, or green for the 8-character new-energy plates) drawn with the machine's
  Chinese font (core/fonts.py) on a car's front, so a capture's thumbnail shows its plate.

Licence of what is drawn here: the project's own. Pure Pillow + numpy; deterministic for a given seed.
"""

from __future__ import annotations

import importlib.util
import io
import random
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

WATCHLIST_LABEL = "演示布控对象（Eileen Collins 公有领域照片）"
PHOTO_LICENCE = ("skimage/data/astronaut.png: Eileen Collins, NASA; no known copyright restrictions, released into "
                 "the public domain (scikit-image)")
# Her face in astronaut.png (512 × 512), as dlib's HOG detector boxes it: left, top, right, bottom.
_FACE_BOX = (179, 83, 267, 171)


class DemoMediaMissing(RuntimeError):
    """scikit-image (a dependency) is not installed, so there is no photo for the face watchlist."""


def astronaut_path() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DemoMediaMissing("scikit-image is not installed (pip install scikit-image): no demo face photo")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    if not path.is_file():
        raise DemoMediaMissing(f"{path} is missing from the scikit-image installation")
    return path


@lru_cache(maxsize=1)
def _astronaut() -> Image.Image:
    return Image.open(astronaut_path()).convert("RGB")


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop_around_face(margin: float, shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    left, top, right, bottom = _FACE_BOX
    side = right - left
    cx, cy = (left + right) / 2 + shift[0] * side, (top + bottom) / 2 + shift[1] * side
    half_w, half_h = side * (0.5 + margin), side * (0.5 + margin) * 1.15
    full = _astronaut()
    cy = max(cy, half_h)  # stay inside the photo (her hair is near its top edge)
    cx = min(max(cx, half_w), full.width - half_w)
    return full.crop((round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h)))


def watchlist_photo() -> bytes:
    """The enrolment photo: a passport-like crop with a wide margin, 200 px wide."""
    img = _crop_around_face(0.9)
    return _jpeg(img.resize((200, round(200 * img.height / img.width)), Image.Resampling.LANCZOS), 92)


def watchlisted_capture(seed: int = 0) -> bytes:
    """A camera's face crop of the watchlisted person: tighter, off-centre, smaller, darker or brighter, blurred and
    more compressed than the enrolment photo."""
    rnd = random.Random(seed)
    img = _crop_around_face(rnd.uniform(0.3, 0.5), (rnd.uniform(-0.08, 0.08), rnd.uniform(-0.05, 0.08)))
    width = rnd.randint(112, 150)
    img = img.resize((width, round(width * img.height / img.width)), Image.Resampling.BILINEAR)
    img = ImageEnhance.Brightness(img).enhance(rnd.uniform(0.8, 1.15))
    img = ImageEnhance.Contrast(img).enhance(rnd.uniform(0.85, 1.1))
    return _jpeg(img.filter(ImageFilter.GaussianBlur(rnd.uniform(0.3, 0.8))), rnd.randint(60, 80))


# ---- drawn faces -------------------------------------------------------------------------------------------------
_SKIN = [(241, 206, 174), (226, 185, 150), (204, 160, 122), (236, 196, 160), (214, 172, 136), (190, 146, 110)]
_HAIR = [(20, 18, 18), (35, 28, 24), (60, 45, 35), (90, 90, 90), (150, 150, 150), (45, 35, 30)]
_CLOTHES = [(40, 60, 110), (120, 30, 30), (60, 60, 60), (220, 220, 220), (30, 90, 60), (150, 110, 60)]
_WALL = [(180, 185, 190), (200, 196, 186), (150, 160, 170), (120, 125, 120), (210, 210, 215)]


def synthetic_face(seed: int, width: int = 128, height: int = 160) -> bytes:
    """A face capture of somebody who is nobody: drawn, varied by ``seed``, with a camera's blur and noise."""
    rnd = random.Random(seed)
    s = 4  # draw at 4× and downsample: smooth edges
    w, h = width * s, height * s
    img = Image.new("RGB", (w, h), rnd.choice(_WALL))
    d = ImageDraw.Draw(img)
    # a lit wall: a vertical gradient
    top = img.getpixel((0, 0))
    for y in range(0, h, s):
        f = 0.85 + 0.25 * y / h
        d.rectangle((0, y, w, y + s), fill=tuple(min(255, int(c * f)) for c in top))  # type: ignore[union-attr]
    skin, hair, cloth = rnd.choice(_SKIN), rnd.choice(_HAIR), rnd.choice(_CLOTHES)
    cx = w / 2 + rnd.uniform(-0.05, 0.05) * w
    fw, fh = w * rnd.uniform(0.40, 0.48), h * rnd.uniform(0.46, 0.52)  # face width / height
    ftop = h * rnd.uniform(0.16, 0.22)
    # shoulders and neck
    d.ellipse((cx - w * 0.62, h * 0.80, cx + w * 0.62, h * 1.5), fill=cloth)
    d.rectangle((cx - fw * 0.22, ftop + fh * 0.8, cx + fw * 0.22, h * 0.86), fill=tuple(int(c * 0.9) for c in skin))
    # hair behind the head
    long_hair = rnd.random() < 0.4
    d.ellipse((cx - fw * 0.58, ftop - fh * 0.12, cx + fw * 0.58, ftop + fh * (1.05 if long_hair else 0.62)), fill=hair)
    # ears, face
    for side in (-1, 1):
        ex = cx + side * fw * 0.5
        d.ellipse((ex - fw * 0.08, ftop + fh * 0.38, ex + fw * 0.08, ftop + fh * 0.6), fill=skin)
    d.ellipse((cx - fw / 2, ftop, cx + fw / 2, ftop + fh), fill=skin)
    # fringe
    d.chord((cx - fw * 0.52, ftop - fh * 0.1, cx + fw * 0.52, ftop + fh * rnd.uniform(0.38, 0.5)), 180, 360,
            fill=hair)
    # eyes, brows
    eye_y = ftop + fh * rnd.uniform(0.44, 0.5)
    eye_dx, eye_w, eye_h = fw * rnd.uniform(0.19, 0.23), fw * 0.13, fh * 0.045
    iris = rnd.choice([(40, 30, 25), (60, 45, 30), (30, 30, 30)])
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse((ex - eye_w, eye_y - eye_h, ex + eye_w, eye_y + eye_h), fill=(245, 245, 240))
        d.ellipse((ex - eye_h * 1.1, eye_y - eye_h * 1.05, ex + eye_h * 1.1, eye_y + eye_h * 1.05), fill=iris)
        by = eye_y - fh * rnd.uniform(0.08, 0.11)
        d.line((ex - eye_w * 1.1, by + side * 0 + 2 * s, ex + eye_w * 1.1, by), fill=hair, width=int(2.5 * s))
    if rnd.random() < 0.25:  # glasses
        for side in (-1, 1):
            ex = cx + side * eye_dx
            d.rounded_rectangle((ex - eye_w * 1.5, eye_y - eye_h * 3, ex + eye_w * 1.5, eye_y + eye_h * 3),
                                radius=4 * s, outline=(30, 30, 30), width=int(1.5 * s))
        d.line((cx - eye_dx + eye_w * 1.5, eye_y, cx + eye_dx - eye_w * 1.5, eye_y), fill=(30, 30, 30),
               width=int(1.5 * s))
    # nose, mouth
    shade = tuple(int(c * 0.78) for c in skin)
    nose_y = ftop + fh * rnd.uniform(0.64, 0.68)
    d.line((cx, eye_y + fh * 0.05, cx - fw * 0.04, nose_y), fill=shade, width=int(1.5 * s))
    d.arc((cx - fw * 0.07, nose_y - fh * 0.03, cx + fw * 0.07, nose_y + fh * 0.03), 0, 180, fill=shade,
          width=int(1.5 * s))
    mouth_y, mouth_w = ftop + fh * rnd.uniform(0.78, 0.82), fw * rnd.uniform(0.14, 0.2)
    lips = (min(255, int(skin[0] * 0.85)), int(skin[1] * 0.55), int(skin[2] * 0.55))
    d.arc((cx - mouth_w, mouth_y - fh * 0.05, cx + mouth_w, mouth_y + fh * 0.03), 20, 160, fill=lips,
          width=int(2.5 * s))
    img = img.resize((width, height), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.6))
    # sensor noise
    noise = Image.effect_noise((width, height), rnd.uniform(6, 12)).convert("RGB")
    img = Image.blend(img, noise, 0.06)
    return _jpeg(img, rnd.randint(70, 85))


# ---- plates ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        from anfang.core.fonts import find_cjk_font

        path, index = find_cjk_font()
        return ImageFont.truetype(str(path), size=size, index=index)
    except Exception:  # noqa: BLE001 - no Chinese font: the plate's letters and digits still show
        return ImageFont.load_default(size=size)


def plate_image(plate: str, width: int = 220) -> bytes:
    """A number plate as a camera's plate crop: blue with white characters (7 characters), gradient green with
    black ones (8 characters, new energy); "闽G·12345" spacing as on the plate (GA 36)."""
    img = _plate(plate, width)
    return _jpeg(img.filter(ImageFilter.GaussianBlur(0.4)), 85)


def _plate(plate: str, width: int) -> Image.Image:
    height = round(width * 140 / 440) if len(plate) <= 7 else round(width * 140 / 480)
    s = 3
    w, h = width * s, height * s
    green = len(plate) >= 8
    img = Image.new("RGB", (w, h), (0, 0, 0))
    d = ImageDraw.Draw(img)
    if green:
        for y in range(h):
            t = y / h
            d.line((0, y, w, y), fill=(int(235 - 120 * t), int(250 - 40 * t), int(235 - 140 * t)))
        ink, border = (10, 10, 10), (40, 40, 40)
    else:
        d.rectangle((0, 0, w, h), fill=(18, 62, 170))
        ink, border = (245, 245, 245), (245, 245, 245)
    d.rounded_rectangle((2 * s, 2 * s, w - 2 * s, h - 2 * s), radius=4 * s, outline=border, width=int(1.5 * s))
    text = plate[:2] + "·" + plate[2:]
    font = _font(int(h * 0.62))
    box = d.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, (w * 0.9) / max(tw, 1))
    if scale < 1.0:
        font = _font(int(h * 0.62 * scale))
        box = d.textbbox((0, 0), text, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
    d.text(((w - tw) / 2 - box[0], (h - th) / 2 - box[1]), text, fill=ink, font=font)
    return img.resize((width, height), Image.Resampling.LANCZOS)


def vehicle_image(plate: str, seed: int = 0, width: int = 320) -> bytes:
    """A vehicle capture: the car's front (bonnet, grille, lights, bumper) with its number plate."""
    rnd = random.Random(seed)
    height = round(width * 0.62)
    img = Image.new("RGB", (width, height), (95, 100, 104))
    d = ImageDraw.Draw(img)
    body = rnd.choice([(230, 230, 232), (30, 30, 34), (150, 152, 158), (140, 20, 24), (20, 50, 110), (200, 200, 190)])
    dark = tuple(int(c * 0.55) for c in body)
    d.rectangle((0, int(height * 0.82), width, height), fill=(70, 72, 75))  # road
    d.rounded_rectangle((int(width * 0.06), int(height * 0.05), int(width * 0.94), int(height * 0.9)), radius=18,
                        fill=body)
    d.polygon([(width * 0.18, height * 0.08), (width * 0.82, height * 0.08), (width * 0.76, height * 0.3),
               (width * 0.24, height * 0.3)], fill=(40, 55, 70))  # windscreen
    for x0 in (0.1, 0.72):  # headlights
        d.rounded_rectangle((int(width * x0), int(height * 0.4), int(width * (x0 + 0.18)), int(height * 0.5)),
                            radius=6, fill=(235, 238, 240), outline=dark)
    d.rounded_rectangle((int(width * 0.33), int(height * 0.38), int(width * 0.67), int(height * 0.52)), radius=6,
                        fill=dark)  # grille
    plate_img = _plate(plate, int(width * 0.36))
    px, py = (width - plate_img.width) // 2, int(height * 0.6)
    img.paste(plate_img, (px, py))
    img = img.filter(ImageFilter.GaussianBlur(0.5))
    noise = Image.effect_noise((width, height), 10).convert("RGB")
    return _jpeg(Image.blend(img, noise, 0.05), 80)


__all__ = ["PHOTO_LICENCE", "WATCHLIST_LABEL", "DemoMediaMissing", "astronaut_path", "plate_image",
           "synthetic_face", "vehicle_image", "watchlist_photo", "watchlisted_capture"]
