"""Face watchlists (人像布控): enrol photos, keep the ANN index in step with the store, match captured faces 1:N.

Layout under ``data_dir``: ``faces/photos/<sha256[:2]>/<sha256>.<ext>`` (enrolled photos, content-addressed) and
``faces/index.usearch`` + ``faces/index.usearch.json`` (the index and its sidecar with the DB generation).

Similarity: ``similarity = 1 / (1 + exp((distance - 0.6) / 0.06))``, a logistic centred on dlib's 0.6
"same person" boundary. It is monotone, so a threshold can be given either way: distance 0.35 (two photos of one
person) ≈ 0.985, the default threshold 0.5 ≈ 0.84, 0.6 = 0.5, 0.8 (strangers) ≈ 0.036.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
from sqlalchemy import delete, func, select

from anfang.faces.embedder import DIM, FaceEmbedder, FaceVector
from anfang.faces.index import FaceIndex
from anfang.faces.models import FaceEntry, FaceIndexState, FaceWatchlist
from anfang.store.engine import Store

log = structlog.get_logger(__name__)

DEFAULT_THRESHOLD = 0.5
_CENTRE, _SCALE = 0.6, 0.06


def similarity_from_distance(distance: float) -> float:
    """Map a Euclidean distance between dlib descriptors to a similarity in 0–1 (see the module doc)."""
    z = (distance - _CENTRE) / _SCALE
    if z > 700:
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


def distance_from_similarity(similarity: float) -> float:
    """Inverse of :func:`similarity_from_distance`."""
    if not 0.0 < similarity < 1.0:
        raise ValueError("similarity must be strictly between 0 and 1")
    return _CENTRE + _SCALE * math.log(1.0 / similarity - 1.0)


class FaceError(ValueError):
    """A watchlist operation that cannot be done (unknown watchlist, no face in the photo, ...)."""


class NoFaceError(FaceError):
    """The photo holds no face the detector (or the whole-crop fallback) could use."""


@dataclass(frozen=True, slots=True)
class Watchlist:
    id: int
    name: str
    description: str
    threshold: float  # largest matching distance
    active: bool
    entries: int

    @property
    def min_similarity(self) -> float:
        return similarity_from_distance(self.threshold)


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """A captured face that matched an enrolled one within the watchlist's threshold."""

    watchlist_id: int
    watchlist: str
    entry_id: int
    label: str
    person_id: int | None
    distance: float
    similarity: float
    photo_path: Path  # the enrolled photo, absolute
    face_box: tuple[int, int, int, int] | None = None  # the captured face in the probe image, when known


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").reshape(DIM).tobytes()


def _vector_from_bytes(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _photo_ext(image: bytes) -> str:
    if image[:3] == b"\xff\xd8\xff":
        return "jpg"
    if image[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "img"


class FaceWatchlistService:
    """Watchlists in the store, photos under ``data_dir``, one ANN index over every active entry (keys = entry ids).

    ``embedder``: used for image bytes given to :meth:`enrol` / :meth:`match` (created on first use). The server's
    capture path (warnings/facematch.py) embeds every face of a capture off the event loop — in a worker thread, or
    in :class:`anfang.faces.workers.EmbedPool` processes when given one — and passes each vector to
    :meth:`match_vector`.
    """

    def __init__(self, store: Store, data_dir: str | Path, *, embedder: FaceEmbedder | None = None,
                 candidates: int = 32, save_interval: float = 5.0) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "faces"
        self.index_path = self.dir / "index.usearch"
        self.candidates = candidates
        self.save_interval = save_interval
        self._saved_at = 0.0
        self._dirty = False
        self._embedder = embedder
        self._lock = threading.RLock()
        self._index: FaceIndex | None = None
        self._generation = -1
        self._watchlists: dict[int, Watchlist] = {}
        # which database the index file belongs to (a hash: the URL may hold a password)
        self._store_tag = hashlib.sha256(store.url.encode()).hexdigest()[:16]

    # -- embedding -------------------------------------------------------------------------------------------------
    @property
    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            self._embedder = FaceEmbedder()
        return self._embedder

    # -- generation and index sync ---------------------------------------------------------------------------------
    def _db_generation(self, s) -> int:  # noqa: ANN001
        return int(s.scalar(select(FaceIndexState.generation).where(FaceIndexState.id == 1)) or 0)

    def _bump(self, s) -> int:  # noqa: ANN001
        state = s.get(FaceIndexState, 1, with_for_update=True, populate_existing=True)
        if state is None:  # the migration inserts the row; this covers a table emptied by hand
            state = FaceIndexState(id=1, generation=0)
            s.add(state)
        state.generation += 1
        s.flush()
        return state.generation

    def index(self) -> FaceIndex:
        """The index, in step with the store: loaded from its file when its generation is the store's, diffed
        against the table when stale (another process enrolled or removed), rebuilt when missing or damaged."""
        with self._lock, self.store.session() as s:
            gen = self._db_generation(s)
            if self._index is not None and gen == self._generation:
                return self._index
            self._refresh_watchlists(s)
            if self._index is None:
                self._index = self._load_or_rebuild(s, gen)
            else:
                self._sync(s, self._index)
            self._generation = gen
            self._save(force=True)
            return self._index

    def _load_or_rebuild(self, s, gen: int) -> FaceIndex:  # noqa: ANN001
        try:
            index = FaceIndex.load(self.index_path)
        except FileNotFoundError:
            log.info("face_index_missing", path=str(self.index_path))
            return self._rebuild(s)
        except ValueError as exc:
            log.warning("face_index_damaged", path=str(self.index_path), error=str(exc))
            return self._rebuild(s)
        if index.meta.get("generation") != gen or index.meta.get("store") != self._store_tag:
            log.info("face_index_stale", file_generation=index.meta.get("generation"), db_generation=gen)
            self._sync(s, index)
        return index

    def _active_ids(self, s) -> np.ndarray:  # noqa: ANN001
        rows = s.scalars(select(FaceEntry.id).join(FaceWatchlist).where(FaceWatchlist.active.is_(True)))
        return np.fromiter(rows, dtype=np.int64)

    def _rebuild(self, s) -> FaceIndex:  # noqa: ANN001
        index = FaceIndex(DIM)
        self._add_rows(s, index, None)
        log.info("face_index_rebuilt", vectors=len(index))
        return index

    def _add_rows(self, s, index: FaceIndex, ids: np.ndarray | None, batch: int = 10_000) -> None:  # noqa: ANN001
        q = select(FaceEntry.id, FaceEntry.embedding).join(FaceWatchlist).where(FaceWatchlist.active.is_(True))
        if ids is not None:
            for start in range(0, len(ids), batch):
                chunk = [int(i) for i in ids[start:start + batch]]
                rows = s.execute(q.where(FaceEntry.id.in_(chunk))).all()
                if rows:
                    index.add([r[0] for r in rows], np.stack([_vector_from_bytes(r[1]) for r in rows]))
            return
        keys: list[int] = []
        vecs: list[np.ndarray] = []
        for row in s.execute(q.order_by(FaceEntry.id).execution_options(yield_per=batch)):
            keys.append(row[0])
            vecs.append(_vector_from_bytes(row[1]))
            if len(keys) >= batch:
                index.add(keys, np.stack(vecs))
                keys, vecs = [], []
        if keys:
            index.add(keys, np.stack(vecs))

    def _sync(self, s, index: FaceIndex) -> None:  # noqa: ANN001
        want = self._active_ids(s)
        have = index.keys().astype(np.int64)
        for key in np.setdiff1d(have, want, assume_unique=True):
            index.remove(int(key))
        missing = np.setdiff1d(want, have, assume_unique=True)
        if len(missing):
            self._add_rows(s, index, missing)

    def _save(self, *, force: bool = False) -> None:
        """Write the index file, at most every ``save_interval`` seconds unless forced: a file behind the store
        is only stale, and the next start diffs it against the table (see :meth:`index`)."""
        self._dirty = True
        if self._index is None or self._generation < 0:
            return
        if force or time.monotonic() - self._saved_at >= self.save_interval:
            self._index.save(self.index_path, meta={"generation": self._generation, "store": self._store_tag})
            self._saved_at = time.monotonic()
            self._dirty = False

    def _advance(self, gen: int) -> None:
        """After this process wrote generation ``gen`` and applied the change to its index: in step when nobody
        else wrote in between, else the next :meth:`index` call diffs the index against the table."""
        if self._index is not None and gen == self._generation + 1:
            self._generation = gen
            self._save()
        else:
            self._generation = -1

    def flush(self) -> None:
        """Write the index file now if it is behind (call at shutdown)."""
        with self._lock:
            if self._dirty:
                self._save(force=True)

    close = flush

    def _refresh_watchlists(self, s) -> None:  # noqa: ANN001
        counts = dict(s.execute(select(FaceEntry.watchlist_id, func.count()).group_by(FaceEntry.watchlist_id)).all())
        self._watchlists = {w.id: Watchlist(w.id, w.name, w.description, w.threshold, w.active, counts.get(w.id, 0))
                            for w in s.scalars(select(FaceWatchlist))}

    # -- watchlists ------------------------------------------------------------------------------------------------
    def create_watchlist(self, name: str, threshold: float = DEFAULT_THRESHOLD, description: str = "", *,
                         min_similarity: float | None = None) -> Watchlist:
        """A new watchlist. ``threshold``: the largest Euclidean distance that matches (0.5 by default; dlib's
        own boundary is 0.6); or give ``min_similarity`` (0–1, see the module doc) instead."""
        name = name.strip()
        if not name:
            raise FaceError("watchlist name is empty")
        if min_similarity is not None:
            threshold = distance_from_similarity(min_similarity)
        if not 0.0 < threshold < 2.0:
            raise FaceError(f"threshold {threshold} is not a distance between 0 and 2")
        with self._lock, self.store.session() as s:
            if s.scalar(select(FaceWatchlist.id).where(FaceWatchlist.name == name)) is not None:
                raise FaceError(f"watchlist {name!r} exists")
            w = FaceWatchlist(name=name, description=description, threshold=float(threshold), active=True)
            s.add(w)
            s.flush()
            gen = self._bump(s)
            self._refresh_watchlists(s)
            self._advance(gen)
            return Watchlist(w.id, w.name, w.description, w.threshold, w.active, 0)

    def get_watchlist(self, ref: int | str) -> Watchlist:
        for w in self.list_watchlists():
            if w.id == ref or w.name == ref:
                return w
        raise FaceError(f"no watchlist {ref!r}")

    def list_watchlists(self) -> list[Watchlist]:
        with self.store.session() as s:
            self._refresh_watchlists(s)
            return sorted(self._watchlists.values(), key=lambda w: w.id)

    def set_threshold(self, watchlist_id: int, threshold: float) -> None:
        if not 0.0 < threshold < 2.0:
            raise FaceError(f"threshold {threshold} is not a distance between 0 and 2")
        with self._lock, self.store.session() as s:
            w = s.get(FaceWatchlist, watchlist_id)
            if w is None:
                raise FaceError(f"no watchlist {watchlist_id}")
            w.threshold = float(threshold)
            gen = self._bump(s)
            self._refresh_watchlists(s)
            self._advance(gen)

    def delete_watchlist(self, watchlist_id: int) -> None:
        with self._lock, self.store.session() as s:
            w = s.get(FaceWatchlist, watchlist_id)
            if w is None:
                raise FaceError(f"no watchlist {watchlist_id}")
            ids = list(s.scalars(select(FaceEntry.id).where(FaceEntry.watchlist_id == watchlist_id)))
            s.execute(delete(FaceEntry).where(FaceEntry.watchlist_id == watchlist_id))
            s.delete(w)
            gen = self._bump(s)
            self._refresh_watchlists(s)
            if self._index is not None:
                for i in ids:
                    self._index.remove(i)
            self._advance(gen)

    # -- entries ---------------------------------------------------------------------------------------------------
    def enrol(self, watchlist_id: int, label: str, image: bytes, person_id: int | None = None, *,
              face: FaceVector | None = None) -> int:
        """Enrol the largest face of ``image`` under ``label``; returns the entry id. The photo is kept under
        the data directory, the embedding in the store, and the index file is updated. ``face``: a face already
        embedded from this image (skips embedding). Raises NoFaceError when the photo has no usable face."""
        label = label.strip()
        if not label:
            raise FaceError("label is empty")
        if face is None:
            face = self.embedder.embed_one_face(image)
        if face is None:
            raise NoFaceError("no face found in the photo")
        digest = hashlib.sha256(image).hexdigest()
        rel = Path("faces") / "photos" / digest[:2] / f"{digest}.{_photo_ext(image)}"
        dest = self.data_dir / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_bytes(image)
            tmp.replace(dest)
        index = self.index()
        with self._lock:
            with self.store.session() as s:
                if s.get(FaceWatchlist, watchlist_id) is None:
                    raise FaceError(f"no watchlist {watchlist_id}")
                entry = FaceEntry(watchlist_id=watchlist_id, label=label, person_id=person_id,
                                  photo_path=rel.as_posix(), photo_sha256=digest, embedding=_vector_bytes(face.vector),
                                  box=",".join(str(v) for v in face.box), detected=face.detected)
                s.add(entry)
                s.flush()
                entry_id = entry.id
                gen = self._bump(s)
            index.add([entry_id], face.vector.reshape(1, DIM))
            self._advance(gen)
        return entry_id

    def remove_entry(self, entry_id: int) -> bool:
        """Remove an enrolled photo (the photo file stays if another entry uses the same image)."""
        with self._lock:
            with self.store.session() as s:
                entry = s.get(FaceEntry, entry_id)
                if entry is None:
                    return False
                rel, digest = entry.photo_path, entry.photo_sha256
                s.delete(entry)
                s.flush()
                shared = s.scalar(select(func.count()).where(FaceEntry.photo_sha256 == digest))
                gen = self._bump(s)
            if not shared:
                (self.data_dir / rel).unlink(missing_ok=True)
            if self._index is not None:
                self._index.remove(entry_id)
            self._advance(gen)
        return True

    def entries(self, watchlist_id: int) -> list[dict]:
        with self.store.session() as s:
            rows = s.scalars(select(FaceEntry).where(FaceEntry.watchlist_id == watchlist_id).order_by(FaceEntry.id))
            return [{"id": e.id, "label": e.label, "person_id": e.person_id, "photo_path": str(self.data_dir /
                     e.photo_path), "detected": e.detected, "created_at": e.created_at} for e in rows]

    # -- matching --------------------------------------------------------------------------------------------------
    def match(self, image: bytes | np.ndarray) -> list[FaceMatch]:
        """Every watchlist hit for the faces in ``image`` (bytes: every detected face, or the whole crop when none
        is detected; an ndarray: one 128-d descriptor), best first. For each face and watchlist, one match per
        enrolled person (label), the nearest photo; only matches within the watchlist's threshold."""
        if isinstance(image, np.ndarray):
            faces: list[tuple[np.ndarray, tuple[int, int, int, int] | None]] = [(image, None)]
        else:
            faces = [(f.vector, f.box) for f in self.embedder.embed_faces(image, crop_fallback=True)]
        out: list[FaceMatch] = []
        for vector, box in faces:
            out.extend(self.match_vector(vector, face_box=box))
        out.sort(key=lambda m: m.distance)
        return out

    def match_vector(self, vector: np.ndarray, *, face_box: tuple[int, int, int, int] | None = None
                     ) -> list[FaceMatch]:
        index = self.index()
        watchlists = self._watchlists
        limit = max((w.threshold for w in watchlists.values() if w.active), default=0.0)
        hits = [(i, d) for i, d in index.search(np.asarray(vector, dtype=np.float32), self.candidates) if d <= limit]
        if not hits:
            return []
        with self.store.session() as s:
            rows = {e.id: e for e in s.scalars(select(FaceEntry).where(FaceEntry.id.in_([i for i, _ in hits])))}
        best: dict[tuple[int, str, int | None], FaceMatch] = {}
        for entry_id, dist in hits:
            e = rows.get(entry_id)
            w = watchlists.get(e.watchlist_id) if e is not None else None
            if e is None or w is None or not w.active or dist > w.threshold:
                continue
            key = (w.id, e.label, e.person_id)
            if key not in best or dist < best[key].distance:
                best[key] = FaceMatch(w.id, w.name, e.id, e.label, e.person_id, dist, similarity_from_distance(dist),
                                      self.data_dir / e.photo_path, face_box)
        return sorted(best.values(), key=lambda m: m.distance)
