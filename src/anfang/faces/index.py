"""A persisted approximate-nearest-neighbour index of face vectors: HNSW from usearch.

Why usearch: it installs as a binary wheel for CPython 3.11 on x86-64 and aarch64 (hnswlib 0.8 is a source
distribution only, so every machine and CI would need a C++ toolchain; faiss-cpu's HNSW cannot remove vectors), it
removes keys, grows by itself, runs concurrent searches without the GIL, and its SIMD kernels are picked at run
time. Distances are Euclidean (usearch's ``l2sq`` metric, square-rooted here), the measure of dlib's 0.6 rule.

Thread safety: searches run concurrently under a shared lock; add / remove / save / load take it exclusively.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DEFAULT_M = 32  # HNSW connectivity (edges per node); 16 left recall@1 < 0.99 at p99 ≤ 2 ms at 1M
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 128  # search breadth; benchmarks/bench_faces.py: recall@1 ≥ 0.99 at 1M (see benchmarks/README.md#faces)
# Vectors are stored as IEEE half floats: half the memory and ~1.7× faster distances (AVX-512 FP16 / F16C kernels
# picked by usearch at run time) at the same recall@1 against exact float32 search (benchmarks/README.md#faces);
# dlib embedding components are |x| < 0.5, where f16 keeps ~3 significant digits, far below the 0.25–0.6 margins.
DEFAULT_DTYPE = "f16"


class _RWLock:
    """Many readers or one writer (writers are not starved: a waiting writer blocks new readers)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class FaceIndex:
    """1:N search over face vectors keyed by integer ids (the watchlist entry ids).

    ``m`` / ``ef_construction`` / ``ef``: HNSW connectivity, build breadth and search breadth.
    """

    def __init__(self, dim: int = 128, *, m: int = DEFAULT_M, ef_construction: int = DEFAULT_EF_CONSTRUCTION,
                 ef: int = DEFAULT_EF, threads: int = 0, dtype: str = DEFAULT_DTYPE) -> None:
        from usearch.index import Index

        self.dim = dim
        self.threads = threads
        self._lock = _RWLock()
        self.meta: dict = {}  # what the saver attached (see save); the service keeps its DB generation there
        if dtype not in ("f32", "f16"):
            raise ValueError(f"unsupported vector storage type {dtype!r} (f32 or f16)")
        self.dtype = dtype
        self._index = Index(ndim=dim, metric="l2sq", dtype=dtype, connectivity=m, expansion_add=ef_construction,
                            expansion_search=ef)

    # -- parameters ------------------------------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return int(self._index.connectivity)

    @property
    def ef_construction(self) -> int:
        return int(self._index.expansion_add)

    @property
    def ef(self) -> int:
        return int(self._index.expansion_search)

    @ef.setter
    def ef(self, value: int) -> None:
        with self._lock.write():
            self._index.expansion_search = int(value)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int | np.integer) and int(key) >= 0 and int(key) in self._index

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)

    def keys(self) -> np.ndarray:
        """Every id in the index (uint64)."""
        with self._lock.read():
            return np.asarray(self._index.keys, dtype=np.uint64)

    # -- writes ----------------------------------------------------------------------------------------------------
    def _matrix(self, vectors: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"expected vectors of {self.dim} dimensions, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("vectors contain NaN or infinity")
        return arr

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray | Sequence[np.ndarray]) -> None:
        """Insert vectors under ids; an id already present is replaced. The index grows as needed."""
        keys = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        arr = self._matrix(vectors)
        if len(keys) != len(arr):
            raise ValueError(f"{len(keys)} ids for {len(arr)} vectors")
        if (keys < 0).any():
            raise ValueError("ids must be non-negative")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("duplicate ids in one add")
        if not len(keys):
            return
        ukeys = keys.astype(np.uint64)
        with self._lock.write():
            present = [int(k) for k in ukeys if int(k) in self._index]
            if present:
                self._index.remove(np.asarray(present, dtype=np.uint64))
            self._index.add(ukeys, arr, threads=self.threads)

    def remove(self, id: int) -> bool:  # noqa: A002 - the interface's name
        """Remove one id; False when it was not there."""
        with self._lock.write():
            if id < 0 or id not in self._index:
                return False
            self._index.remove(int(id))
            return True

    # -- reads -----------------------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """The k nearest ids with their Euclidean distances, nearest first."""
        q = self._matrix(vector)
        if q.shape[0] != 1:
            raise ValueError("search takes one vector")
        with self._lock.read():
            n = len(self._index)
            if not n or k <= 0:
                return []
            found = self._index.search(q[0], min(k, n), threads=1)
            keys, dists = np.asarray(found.keys), np.asarray(found.distances)
        return [(int(key), float(np.sqrt(max(0.0, float(d))))) for key, d in zip(keys, dists, strict=True)]

    def search_exact(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """Brute-force search over the same vectors (the reference recall is measured against)."""
        q = self._matrix(vector)
        with self._lock.read():
            n = len(self._index)
            if not n or k <= 0:
                return []
            found = self._index.search(q[0], min(k, n), exact=True)
            keys, dists = np.asarray(found.keys), np.asarray(found.distances)
        return [(int(key), float(np.sqrt(max(0.0, float(d))))) for key, d in zip(keys, dists, strict=True)]

    # -- persistence -----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], meta: dict | None = None) -> None:
        """Write the index atomically (temp file + rename) with a JSON sidecar ``<path>.json`` holding the
        parameters and ``meta`` (the service keeps its DB generation there)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with self._lock.write():
            self._index.save(str(tmp))
            info = {"dim": self.dim, "dtype": self.dtype, "m": self.m, "ef_construction": self.ef_construction,
                    "ef": self.ef,
                    "count": len(self._index), "meta": meta or {}}
        os.replace(tmp, path)
        side = path.with_name(path.name + ".json")
        side_tmp = side.with_name(side.name + ".tmp")
        side_tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(side_tmp, side)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, threads: int = 0) -> FaceIndex:
        """Read an index written by :meth:`save`. Raises FileNotFoundError / ValueError when missing or damaged."""
        path = Path(path)
        side = path.with_name(path.name + ".json")
        if not path.is_file() or not side.is_file():
            raise FileNotFoundError(f"no face index at {path}")
        try:
            info = json.loads(side.read_text(encoding="utf-8"))
            index = cls(int(info["dim"]), m=int(info["m"]), ef_construction=int(info["ef_construction"]),
                        ef=int(info["ef"]), threads=threads, dtype=str(info.get("dtype", "f32")))
            index._index.load(str(path))
            index._index.expansion_search = int(info["ef"])
        except (KeyError, TypeError, json.JSONDecodeError, RuntimeError) as exc:
            raise ValueError(f"damaged face index at {path}: {exc}") from exc
        if len(index) != int(info.get("count", len(index))):
            raise ValueError(f"damaged face index at {path}: {len(index)} vectors, sidecar says {info['count']}")
        index.meta = dict(info.get("meta") or {})
        return index


def read_meta(path: str | os.PathLike[str]) -> dict | None:
    """The ``meta`` a saved index carries, without loading the index; None when absent or unreadable."""
    side = Path(path).with_name(Path(path).name + ".json")
    try:
        return dict(json.loads(side.read_text(encoding="utf-8")).get("meta") or {})
    except (OSError, ValueError, AttributeError):
        return None
