"""Embedding in worker processes: an in-process pool (embedded default) and NATS queue-group workers (scale-out).

Embedding a face costs tens of ms of CPU (detector + shape predictor + ResNet), so it never runs on the event loop.

* :class:`EmbedPool` — a ``ProcessPoolExecutor`` (``spawn`` start method: forking a process that runs an asyncio
  loop and database pools is unsafe) whose workers each load the dlib models once.
* :func:`serve_worker` — ``anfang faces worker --nats nats://127.0.0.1:4222``: subscribes to ``anfang.faces.embed``
  in queue group ``faces``; NATS hands each request to one member of the group, so starting more workers (on this
  or other machines) adds throughput with no configuration. :class:`NatsEmbedClient` is the requesting side.

Wire format (request/reply, core NATS): the request body is the image (JPEG/PNG bytes); the reply has header
``Anfang-Status`` = ``ok`` (body: 128 little-endian float32 = 512 bytes, header ``Anfang-Box`` =
``left,top,right,bottom`` and ``Anfang-Detected`` = ``1``/``0``), ``noface`` (empty body) or ``error`` (header
``Anfang-Error`` with the message, e.g. not an image).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import structlog

from anfang.faces.embedder import DIM, FaceEmbedder, FaceVector, InvalidImageError

log = structlog.get_logger(__name__)

SUBJECT = "anfang.faces.embed"
QUEUE = "faces"

# -- the worker process side ---------------------------------------------------------------------------------------
_EMBEDDER: FaceEmbedder | None = None


def _init_worker() -> None:
    global _EMBEDDER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    _EMBEDDER = FaceEmbedder()


def _embed_one_face(image: bytes) -> tuple[bytes, tuple[int, int, int, int], bool] | None:
    """Runs in a worker process. Returns (vector bytes, box, detected) or None; raises InvalidImageError."""
    embedder = _EMBEDDER or FaceEmbedder()
    face = embedder.embed_one_face(image)
    if face is None:
        return None
    return face.vector.astype("<f4").tobytes(), face.box, face.detected


def _embed_faces(image: bytes, crop_fallback: bool) -> list[tuple[bytes, tuple[int, int, int, int], bool]]:
    embedder = _EMBEDDER or FaceEmbedder()
    return [(f.vector.astype("<f4").tobytes(), f.box, f.detected)
            for f in embedder.embed_faces(image, crop_fallback=crop_fallback)]


def _face(raw: tuple[bytes, tuple[int, int, int, int], bool]) -> FaceVector:
    return FaceVector(tuple(raw[1]), np.frombuffer(raw[0], dtype="<f4").astype(np.float32), bool(raw[2]))  # type: ignore[arg-type]


class EmbedPool:
    """``workers`` embedding processes (default: the CPU count). Use as an async context manager or call
    :meth:`close`. Non-images raise :class:`InvalidImageError` from the awaiting call."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker)

    async def warm_up(self) -> None:
        """Start every worker and load its models now, not on the first capture."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _noop) for _ in range(self.workers)))

    async def embed_one_face(self, image: bytes) -> FaceVector | None:
        raw = await asyncio.get_running_loop().run_in_executor(self._pool, _embed_one_face, bytes(image))
        return None if raw is None else _face(raw)

    async def embed_one(self, image: bytes) -> np.ndarray | None:
        """The descriptor of the largest face (whole-crop fallback for tight crops), or None."""
        face = await self.embed_one_face(image)
        return None if face is None else face.vector

    async def embed_faces(self, image: bytes, *, crop_fallback: bool = True) -> list[FaceVector]:
        """Every face in a scene image (the whole-crop face when none is detected, unless ``crop_fallback`` is
        off); the vectors go to :meth:`FaceWatchlistService.match_vector`."""
        raws = await asyncio.get_running_loop().run_in_executor(self._pool, _embed_faces, bytes(image),
                                                                crop_fallback)
        return [_face(r) for r in raws]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> EmbedPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)


def _noop() -> int:
    return os.getpid()


# -- NATS ----------------------------------------------------------------------------------------------------------
@dataclass
class WorkerStats:
    handled: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0


async def serve_worker(nats_url: str = "nats://127.0.0.1:4222", *, processes: int = 1, subject: str = SUBJECT,
                       queue: str = QUEUE, stop: asyncio.Event | None = None,
                       ready: asyncio.Event | None = None) -> WorkerStats:
    """Answer embedding requests on ``subject`` as a member of queue group ``queue`` until ``stop`` is set (or
    the task is cancelled). ``processes`` embedding processes serve this subscription."""
    import nats

    stats = WorkerStats()
    stop = stop or asyncio.Event()
    pool = EmbedPool(processes)
    await pool.warm_up()
    nc = await nats.connect(nats_url, name=f"anfang-faces-worker-{os.getpid()}", max_reconnect_attempts=-1)
    slots = asyncio.Semaphore(processes)

    async def handle(msg) -> None:  # noqa: ANN001
        async with slots:
            stats.handled += 1
            try:
                face = await pool.embed_one_face(msg.data)
            except InvalidImageError as exc:
                stats.errors += 1
                await _respond(nc, msg, b"", {"Anfang-Status": "error", "Anfang-Error": _header(str(exc))})
                return
            except Exception as exc:  # noqa: BLE001 - a bad request must not stop the worker
                stats.errors += 1
                log.exception("faces_worker_failed")
                await _respond(nc, msg, b"", {"Anfang-Status": "error", "Anfang-Error": type(exc).__name__})
                return
            if face is None:
                stats.no_face += 1
                await _respond(nc, msg, b"", {"Anfang-Status": "noface"})
                return
            stats.faces += 1
            await _respond(nc, msg, face.vector.astype("<f4").tobytes(),
                           {"Anfang-Status": "ok", "Anfang-Box": ",".join(map(str, face.box)),
                            "Anfang-Detected": "1" if face.detected else "0"})

    tasks: set[asyncio.Task] = set()

    async def on_msg(msg) -> None:  # noqa: ANN001 - dispatch concurrently, bounded by `slots`
        task = asyncio.get_running_loop().create_task(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sub = await nc.subscribe(subject, queue=queue, cb=on_msg, pending_msgs_limit=10_000)
    await nc.flush()
    log.info("faces_worker_ready", nats=nats_url, subject=subject, queue=queue, processes=processes)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.drain()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await nc.drain()
        await asyncio.get_running_loop().run_in_executor(None, pool.close)
    return stats


def _header(text: str) -> str:
    """A NATS header value: one line, ASCII-safe, bounded."""
    return text.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode()[:500]


async def _respond(nc, msg, body: bytes, headers: dict[str, str]) -> None:  # noqa: ANN001
    if msg.reply:
        await nc.publish(msg.reply, body, headers=headers)


class EmbedRequestError(RuntimeError):
    """A worker could not embed the image (the message says why, e.g. not a JPEG/PNG image)."""


class NatsEmbedClient:
    """The requesting side: ``await client.embed_one(image)`` → vector or None, served by any worker of the group."""

    def __init__(self, nc, *, subject: str = SUBJECT, timeout: float = 10.0) -> None:  # noqa: ANN001
        self.nc, self.subject, self.timeout = nc, subject, timeout

    @classmethod
    async def connect(cls, nats_url: str = "nats://127.0.0.1:4222", **kwargs) -> NatsEmbedClient:  # noqa: ANN003
        import nats

        return cls(await nats.connect(nats_url, name=f"anfang-faces-client-{os.getpid()}"), **kwargs)

    async def embed_one_face(self, image: bytes) -> FaceVector | None:
        reply = await self.nc.request(self.subject, bytes(image), timeout=self.timeout)
        headers = reply.headers or {}
        status = headers.get("Anfang-Status")
        if status == "noface":
            return None
        if status != "ok":
            raise EmbedRequestError(headers.get("Anfang-Error") or f"embedding failed (status {status!r})")
        vector = np.frombuffer(reply.data, dtype="<f4").astype(np.float32)
        if vector.shape != (DIM,):
            raise EmbedRequestError(f"worker returned {len(reply.data)} bytes, not a {DIM}-d vector")
        box = tuple(int(v) for v in headers.get("Anfang-Box", "0,0,0,0").split(","))
        return FaceVector(box, vector, headers.get("Anfang-Detected") == "1")  # type: ignore[arg-type]

    async def embed_one(self, image: bytes) -> np.ndarray | None:
        face = await self.embed_one_face(image)
        return None if face is None else face.vector

    async def close(self) -> None:
        await self.nc.drain()
