"""Glue between GA/T 1400 face captures and the face watchlists: fetch the capture's images from the 视图库's
image store, embed (in-process by default, in worker processes when a pool is given), search 1:N, and hand the
matches to the warning engine as plain dicts (with both photos' URLs)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from anfang.core.events import Event
from anfang.faces.embedder import InvalidImageError
from anfang.faces.service import FaceWatchlistService
from anfang.store.engine import Store
from anfang.viid.models import ViidBlob, ViidImage, ViidObject

FACE_FIRST = {"11": 0, "14": 1}  # GA/T 1400 image types: 11 face crop, 14 scene


def make_face_matcher(store: Store, get_image: Callable[[str], bytes], faces: FaceWatchlistService,
                      pool: Any = None) -> Callable[[Event], Any]:
    """``get_image(location)`` reads the image store; ``pool`` (optional) has ``async embed_faces(bytes, ...)``.

    Every face the detector finds in every image of the capture (face crop and scene) is matched, not only the
    largest: in a photo of two people the watchlisted one may be the smaller face. Only a face crop (type 11) in
    which the detector finds nothing is taken whole as the face (tight crops, see ``FaceEmbedder.embed_one``); a
    scene without a detected face is never embedded whole. The capture is marked with the number of faces the
    detector found (``viid_objects.faces``; 0: 未检出人脸)."""

    def watching() -> bool:
        """Skip the costly embedding when no active watchlist has anyone enrolled."""
        return any(w.active and w.entries for w in faces.list_watchlists())

    def images_of(ids: list[str]) -> list[tuple[int, str, bytes]]:
        with store.session() as s:
            rows = list(s.execute(select(ViidImage.id, ViidImage.type, ViidBlob.location)
                                  .join(ViidBlob, ViidBlob.sha256 == ViidImage.sha256)
                                  .where(ViidImage.image_id.in_(ids))))
        rows.sort(key=lambda r: FACE_FIRST.get(r.type or "", 2))
        return [(r.id, r.type or "", get_image(r.location)) for r in rows]

    def mark(object_pk: Any, count: int) -> None:
        if object_pk is None:
            return
        with store.session() as s:
            s.execute(update(ViidObject).where(ViidObject.id == int(object_pk)).values(faces=count))

    async def embed(data: bytes, crop: bool) -> list[Any]:
        try:
            if pool is not None:
                return list(await pool.embed_faces(data, crop_fallback=crop))
            return await asyncio.to_thread(faces.embedder.embed_faces, data, crop_fallback=crop)
        except InvalidImageError:
            return []

    async def matcher(e: Event) -> list[dict[str, Any]]:
        ids = [i for i in (e.data.get("image_ids") or []) if i]
        if not ids or not await asyncio.to_thread(watching):
            return []
        found: list[tuple[int, Any]] = []
        for pk, kind, data in await asyncio.to_thread(images_of, ids):
            found.extend((pk, f) for f in await embed(data, kind == "11"))
        detected = sum(1 for _, f in found if f.detected)
        await asyncio.to_thread(mark, e.data.get("object_pk"), detected)
        best: dict[tuple[Any, ...], dict[str, Any]] = {}
        for pk, f in found:
            for m in await asyncio.to_thread(faces.match_vector, f.vector, face_box=f.box):
                key = (m.watchlist_id, m.label, m.person_id)
                if key in best and best[key]["distance"] <= m.distance:
                    continue
                best[key] = {"watchlist_id": m.watchlist_id, "watchlist": m.watchlist, "entry_id": m.entry_id,
                             "label": m.label, "person_id": m.person_id, "distance": round(m.distance, 4),
                             "similarity": round(m.similarity, 4),
                             "image": f"/viid/images/{pk}", "face_box": list(f.box), "face_detected": f.detected,
                             "faces_in_capture": detected}
        return sorted(best.values(), key=lambda m: m["distance"])

    return matcher
