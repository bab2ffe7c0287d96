"""Glue between GA/T 1400 face captures and the face watchlists: fetch the capture's images from the 视图库's
image store, embed (in-process by default, in worker processes when a pool is given), search 1:N, and hand the
matches to the warning engine as plain dicts (with both photos' URLs)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from anfang.core.events import Event
from anfang.faces.service import FaceWatchlistService
from anfang.store.engine import Store
from anfang.viid.models import ViidBlob, ViidImage

FACE_FIRST = {"11": 0, "14": 1}  # GA/T 1400 image types: 11 face crop, 14 scene


def make_face_matcher(store: Store, get_image: Callable[[str], bytes], faces: FaceWatchlistService,
                      pool: Any = None) -> Callable[[Event], Any]:
    """``get_image(location)`` reads the image store; ``pool`` (optional) has ``async embed_one(bytes)``."""

    def watching() -> bool:
        """Skip the costly embedding when no active watchlist has anyone enrolled."""
        return any(w.active and w.entries for w in faces.list_watchlists())

    def images_of(ids: list[str]) -> list[tuple[int, bytes]]:
        with store.session() as s:
            rows = list(s.execute(select(ViidImage.id, ViidImage.type, ViidBlob.location)
                                  .join(ViidBlob, ViidBlob.sha256 == ViidImage.sha256)
                                  .where(ViidImage.image_id.in_(ids))))
        rows.sort(key=lambda r: FACE_FIRST.get(r.type or "", 2))
        return [(r.id, get_image(r.location)) for r in rows]

    async def matcher(e: Event) -> list[dict[str, Any]]:
        ids = [i for i in (e.data.get("image_ids") or []) if i]
        if not ids or not await asyncio.to_thread(watching):
            return []
        for pk, data in await asyncio.to_thread(images_of, ids):
            vector = await (pool.embed_one(data) if pool is not None
                            else asyncio.to_thread(faces.embedder.embed_one, data))
            if vector is None:
                continue
            matches = await asyncio.to_thread(faces.match_vector, vector)
            return [{"watchlist_id": m.watchlist_id, "watchlist": m.watchlist, "entry_id": m.entry_id,
                     "label": m.label, "person_id": m.person_id, "distance": round(m.distance, 4),
                     "similarity": round(m.similarity, 4), "photo_path": str(m.photo_path),
                     "image": f"/viid/images/{pk}"} for m in matches]
        return []

    return matcher
