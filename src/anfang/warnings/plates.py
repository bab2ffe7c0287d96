"""Plate watchlist matching (车辆布控): exact, one misread character, and a missing or misread province prefix.

Recognition engines confuse a small set of glyphs (0/D/Q, 8/B, 2/Z, 5/S, 1/I, 6/G); a tolerant match allows one
substituted character anywhere after the province, and ignores the province character itself (a camera in
Sanming often misreads 闽 or drops it). Pure functions; the lists live in the warnings service.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFUSABLE = [set("0DQ"), set("8B"), set("2Z"), set("5S"), set("1I"), set("6G")]


def normalize_plate(plate: str) -> str:
    return "".join(plate.split()).upper().replace("·", "").replace("-", "")


def _body(plate: str) -> str:
    """The plate without its province character (the first CJK character), if any."""
    return plate[1:] if plate and not plate[0].isascii() else plate


def _confusable(a: str, b: str) -> bool:
    return any(a in group and b in group for group in CONFUSABLE)


@dataclass(frozen=True)
class PlateMatch:
    listed: str
    seen: str
    kind: str  # exact | province | one_char
    score: float  # 1.0 exact, 0.95 province only, 0.9 confusable char, 0.8 other char


def match_plate(seen: str, listed: str, *, tolerant: bool = True) -> PlateMatch | None:
    s, w = normalize_plate(seen), normalize_plate(listed)
    if not s or not w:
        return None
    if s == w:
        return PlateMatch(listed, seen, "exact", 1.0)
    if not tolerant:
        return None
    sb, wb = _body(s), _body(w)
    if sb == wb and len(sb) >= 5:
        return PlateMatch(listed, seen, "province", 0.95)
    if len(sb) == len(wb) and len(sb) >= 5:
        diffs = [(a, b) for a, b in zip(sb, wb, strict=True) if a != b]
        if len(diffs) == 1:
            return PlateMatch(listed, seen, "one_char", 0.9 if _confusable(*diffs[0]) else 0.8)
    return None


class PlateIndex:
    """Constant-time tolerant lookup over a watchlist: each listed plate is indexed by its body and by its body
    with each position wildcarded, so a passage costs about eight dict lookups whatever the list's size."""

    def __init__(self) -> None:
        self._exact: dict[str, set[str]] = {}
        self._body: dict[str, set[str]] = {}
        self._wild: dict[str, set[str]] = {}

    def add(self, listed: str) -> None:
        w = normalize_plate(listed)
        body = _body(w)
        self._exact.setdefault(w, set()).add(w)
        self._body.setdefault(body, set()).add(w)
        for i in range(len(body)):
            self._wild.setdefault(body[:i] + "?" + body[i + 1:], set()).add(w)

    def discard(self, listed: str) -> None:
        w = normalize_plate(listed)
        body = _body(w)
        for table, key in [(self._exact, w), (self._body, body)] + [
                (self._wild, body[:i] + "?" + body[i + 1:]) for i in range(len(body))]:
            bucket = table.get(key)
            if bucket is not None:
                bucket.discard(w)
                if not bucket:
                    del table[key]

    def lookup(self, seen: str, *, tolerant: bool = True) -> list[PlateMatch]:
        s = normalize_plate(seen)
        candidates = set(self._exact.get(s, ()))
        if tolerant:
            body = _body(s)
            candidates |= self._body.get(body, set())
            for i in range(len(body)):
                candidates |= self._wild.get(body[:i] + "?" + body[i + 1:], set())
        found = [m for c in candidates if (m := match_plate(s, c, tolerant=tolerant)) is not None]
        return sorted(found, key=lambda m: -m.score)
