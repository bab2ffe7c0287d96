"""Face watchlists (人像布控) on real photos: ``../shared/testdata/faces`` (face_recognition's example set, MIT
licence, see its LICENSE): ``train/<person>/*.jpg`` is the gallery, ``test/*.jpg`` the probes. Read from there,
never copied into the repository; the tests skip with the reason when the directory is absent.

Store parts run on SQLite and PostgreSQL (the ``store`` fixture); NATS parts skip where the service is absent
(fail under ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from anfang.faces.embedder import FaceEmbedder, InvalidImageError
from anfang.faces.index import FaceIndex
from anfang.faces.service import (
    FaceWatchlistService,
    NoFaceError,
    distance_from_similarity,
    similarity_from_distance,
)
from conftest import _service_missing

FACES = Path(os.environ.get("ANFANG_FACES_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata"
                            / "faces"))
NATS_URL = os.environ.get("ANFANG_TEST_NATS_URL", "nats://127.0.0.1:4222")

# who is in each probe photo (the third face in obama_and_biden.jpg is a person in neither set)
PROBES = {
    "alex_lacamoire1.jpg": {"alex_lacamoire"},
    "johnsnow_test1.jpg": {"kit_harington"},
    "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
    "obama1.jpg": {"obama"},
    "obama_and_biden.jpg": {"obama", "biden"},
}


@pytest.fixture(scope="module")
def faces_dir() -> Path:
    if not (FACES / "train").is_dir() or not (FACES / "test").is_dir():
        pytest.skip(f"face photos not found at {FACES} (set ANFANG_FACES_TESTDATA to the train/ + test/ folder)")
    return FACES


class _MemoEmbedder(FaceEmbedder):
    """The real embedder, remembering its answers per image: the service tests embed the same photos on both
    databases, and embedding (tested above them) is what costs the time."""

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[str, bytes], object] = {}

    def embed_faces(self, image: bytes, *, crop_fallback: bool = False):  # noqa: ANN201
        key = (f"all{crop_fallback}", bytes(image))
        if key not in self._memo:
            self._memo[key] = super().embed_faces(image, crop_fallback=crop_fallback)
        return self._memo[key]

    def embed_one_face(self, image: bytes):  # noqa: ANN201
        key = ("one", bytes(image))
        if key not in self._memo:
            self._memo[key] = super().embed_one_face(image)
        return self._memo[key]


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return _MemoEmbedder()


def _gallery(faces_dir: Path) -> dict[str, list[bytes]]:
    return {d.name: [f.read_bytes() for f in sorted(d.iterdir()) if f.is_file()]
            for d in sorted((faces_dir / "train").iterdir()) if d.is_dir()}


def _probe(faces_dir: Path, name: str) -> bytes:
    return (faces_dir / "test" / name).read_bytes()


def _tight_crop(faces_dir: Path, embedder: FaceEmbedder, name: str, inset: float, size: int = 150) -> bytes:
    """A GA/T 1400-style face crop: the detector's box shrunk by ``inset`` of its width, 150×150 JPEG."""
    from PIL import Image

    data = _probe(faces_dir, name)
    face = embedder.embed_faces(data)[0]
    left, top, right, bottom = face.box
    p = int((right - left) * inset)
    with Image.open(io.BytesIO(data)) as im:
        crop = im.convert("RGB").crop((left + p, top + p, right - p, bottom - p)).resize((size, size))
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=85)
    return buf.getvalue()


# -- embedder --------------------------------------------------------------------------------------------------------
def test_embedder_finds_every_face_and_same_person_is_closer_than_strangers(faces_dir: Path,
                                                                            embedder: FaceEmbedder) -> None:
    counts = {name: len(embedder.embed_faces(_probe(faces_dir, name))) for name in PROBES}
    assert counts == {"alex_lacamoire1.jpg": 1, "johnsnow_test1.jpg": 1, "kit_with_rose.jpg": 2, "obama1.jpg": 1,
                      "obama_and_biden.jpg": 3}
    gallery = {who: [embedder.embed_one(p) for p in photos] for who, photos in _gallery(faces_dir).items()}
    for vecs in gallery.values():
        for v in vecs:
            assert v is not None and v.dtype == np.float32 and v.shape == (128,)
    same = [float(np.linalg.norm(a - b)) for vecs in gallery.values() for i, a in enumerate(vecs) for b in vecs[i + 1:]]
    other = [float(np.linalg.norm(a - b)) for p, va in gallery.items() for q, vb in gallery.items() if p < q
             for a in va for b in vb]
    assert max(same) < 0.5 < 0.6 < min(other)


def test_non_image_input_gives_a_clear_error(embedder: FaceEmbedder) -> None:
    for junk in (b"", b"hello, not a photo", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"\xff\xd8\xff\xe0truncated"):
        with pytest.raises(InvalidImageError, match="image"):
            embedder.embed_faces(junk)
    with pytest.raises(InvalidImageError, match="not a JPEG or PNG"):
        embedder.embed_one(b"GIF? no: plain text")


def test_image_without_a_face_gives_no_vector(embedder: FaceEmbedder) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (90, 140, 200)).save(buf, "PNG")  # a scene of sky: no face, not crop-shaped
    assert embedder.embed_faces(buf.getvalue()) == []
    assert embedder.embed_one(buf.getvalue()) is None


def test_tight_face_crop_falls_back_to_the_whole_crop(faces_dir: Path, embedder: FaceEmbedder) -> None:
    crop = _tight_crop(faces_dir, embedder, "obama1.jpg", inset=0.15)
    assert embedder.embed_faces(crop) == []  # the detector misses a crop this tight
    assert [f.detected for f in embedder.embed_faces(crop, crop_fallback=True)] == [False]
    face = embedder.embed_one_face(crop)
    assert face is not None and not face.detected
    enrolled = embedder.embed_one((faces_dir / "train" / "obama" / "obama.jpg").read_bytes())
    assert float(np.linalg.norm(face.vector - enrolled)) < 0.5
    strict = FaceEmbedder(whole_crop_fallback=False)
    assert strict.embed_one(crop) is None


# -- index -----------------------------------------------------------------------------------------------------------
def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_search_remove_replace_and_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vecs = _unit(rng, 2000)
    index = FaceIndex(128)
    index.add(range(1, 2001), vecs)
    assert len(index) == 2000
    hits = index.search(vecs[41] + 0.01, k=3)
    assert hits[0][0] == 42 and hits[0][1] == pytest.approx(0.01 * np.sqrt(128), abs=1e-3)
    assert hits[0][1] <= hits[1][1] <= hits[2][1]
    assert index.remove(42) and not index.remove(42)
    assert all(i != 42 for i, _ in index.search(vecs[41], k=5))
    index.add([7], vecs[41:42])  # re-adding an id replaces its vector
    assert index.search(vecs[41], k=1)[0] == (7, pytest.approx(0.0, abs=1e-4))
    path = tmp_path / "idx" / "faces.usearch"
    index.save(path, meta={"generation": 3})
    loaded = FaceIndex.load(path)
    assert len(loaded) == len(index) == 1999 and loaded.meta == {"generation": 3}
    assert (loaded.m, loaded.ef_construction, loaded.ef) == (index.m, index.ef_construction, index.ef)
    assert loaded.dtype == index.dtype == "f16"
    for probe in vecs[::97]:
        assert loaded.search(probe, k=5) == index.search(probe, k=5)
    (tmp_path / "idx" / "faces.usearch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        FaceIndex.load(path)
    with pytest.raises(FileNotFoundError):
        FaceIndex.load(tmp_path / "nothing.usearch")


def test_half_float_storage_keeps_distances_and_old_float32_indexes_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    vecs = (_unit(rng, 3000) * 0.9).astype(np.float32)  # dlib-like scale: |x| ≈ 0.9, components ≪ 1
    probes = vecs[:40] + (_unit(rng, 40) * 0.3).astype(np.float32)
    half = FaceIndex(128)
    half.add(range(3000), vecs)
    found = 0
    for q in probes:
        exact = np.linalg.norm(vecs - q, axis=1)
        want = {int(i) for i in np.argsort(exact)[:3]}
        got = half.search(q, k=3)
        # half floats keep each distance (HNSW is approximate: which neighbours it finds is the recall below)
        assert [d for _, d in got] == pytest.approx([float(exact[i]) for i, _ in got], abs=2e-3)
        assert got[0][0] == int(np.argmin(exact))
        found += len({i for i, _ in got} & want)
    assert found >= 0.95 * 3 * len(probes)
    # an index saved before half floats (sidecar without "dtype") still loads, as float32
    old = FaceIndex(128, dtype="f32")
    old.add(range(3000), vecs)
    path = tmp_path / "old.usearch"
    old.save(path)
    side = path.with_name(path.name + ".json")
    info = json.loads(side.read_text())
    del info["dtype"]
    side.write_text(json.dumps(info))
    loaded = FaceIndex.load(path)
    assert loaded.dtype == "f32" and loaded.search(vecs[5], k=1) == [(5, pytest.approx(0.0, abs=1e-4))]
    with pytest.raises(ValueError, match="f32 or f16"):
        FaceIndex(128, dtype="i8")


def test_index_rejects_wrong_shapes_and_is_empty_safe() -> None:
    index = FaceIndex(128)
    assert index.search(np.zeros(128, np.float32), k=5) == []
    with pytest.raises(ValueError, match="128 dimensions"):
        index.add([1], np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError, match="ids for"):
        index.add([1, 2], np.zeros((1, 128), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add([1], np.full((1, 128), np.nan, np.float32))


def test_index_is_thread_safe_under_concurrent_adds_searches_and_removes() -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 4000)
    index = FaceIndex(128)
    index.add(range(1000), vecs[:1000])
    errors: list[BaseException] = []
    found: list[bool] = []

    def writer(lo: int, hi: int) -> None:
        try:
            for start in range(lo, hi, 50):
                index.add(range(start, start + 50), vecs[start:start + 50])
                index.remove(start)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(600):
                res = index.search(vecs[i % 1000], k=1)
                found.append(bool(res) and res[0][0] == i % 1000)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(1000, 2500)), threading.Thread(target=writer, args=(2500, 4000))]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(found) >= 0.98 * len(found)  # approximate search: an exact member is almost always its own nearest
    assert len(index) == 4000 - 60  # 3000 added, every 50th removed


# -- similarity ------------------------------------------------------------------------------------------------------
def test_similarity_is_monotone_and_invertible() -> None:
    assert similarity_from_distance(0.6) == pytest.approx(0.5)
    assert similarity_from_distance(0.35) > 0.98 > similarity_from_distance(0.5) > 0.8
    assert similarity_from_distance(0.9) < 0.01 and similarity_from_distance(5.0) >= 0.0
    for d in (0.3, 0.45, 0.5, 0.7):
        assert distance_from_similarity(similarity_from_distance(d)) == pytest.approx(d)


# -- the service, on both databases ----------------------------------------------------------------------------------
def _enrol(svc: FaceWatchlistService, watchlist_id: int, faces_dir: Path, skip: str | None = None) -> int:
    n = 0
    for who, photos in _gallery(faces_dir).items():
        if who == skip:
            continue
        for photo in photos:
            svc.enrol(watchlist_id, who, photo)
            n += 1
    return n


def _labels(svc: FaceWatchlistService, faces_dir: Path, name: str) -> set[str]:
    return {m.label for m in svc.match(_probe(faces_dir, name))}


def test_every_probe_of_an_enrolled_person_matches_the_right_identity(store, tmp_path: Path,
                                                                       faces_dir: Path, embedder: FaceEmbedder) -> None:
    svc = FaceWatchlistService(store, tmp_path, embedder=embedder)
    wl = svc.create_watchlist("重点人员", description="key persons")
    assert _enrol(svc, wl.id, faces_dir) == 9
    for name, people in PROBES.items():
        matches = svc.match(_probe(faces_dir, name))
        assert {m.label for m in matches} == people, name
        for m in matches:
            assert m.watchlist == "重点人员" and m.watchlist_id == wl.id
            assert m.distance < 0.5 and 0.8 < m.similarity <= 1.0
            assert m.photo_path.is_file() and m.photo_path.is_relative_to(tmp_path)
            assert m.face_box is not None
    # one match per enrolled person and face, the nearest of that person's photos
    obama = [m for m in svc.match(_probe(faces_dir, "obama1.jpg")) if m.label == "obama"]
    assert len(obama) == 1
    assert [w.entries for w in svc.list_watchlists()] == [9]


def test_a_person_not_enrolled_gets_no_match(store, tmp_path: Path, faces_dir: Path,
                                            embedder: FaceEmbedder) -> None:
    svc = FaceWatchlistService(store, tmp_path, embedder=embedder)
    wl = svc.create_watchlist("watch")
    _enrol(svc, wl.id, faces_dir, skip="alex_lacamoire")
    assert svc.match(_probe(faces_dir, "alex_lacamoire1.jpg")) == []
    for name, people in PROBES.items():
        assert _labels(svc, faces_dir, name) == people - {"alex_lacamoire"}, name
    # a GA/T 1400-style crop cut inside the detector's box still matches (whole-crop fallback)
    crop = _tight_crop(faces_dir, embedder, "obama1.jpg", inset=0.15)
    assert [m.label for m in svc.match(crop)] == ["obama"]
    assert svc.match(_tight_crop(faces_dir, embedder, "alex_lacamoire1.jpg", inset=0.15)) == []


def test_remove_entry_and_thresholds_per_watchlist(store, tmp_path: Path, faces_dir: Path,
                                                   embedder: FaceEmbedder) -> None:
    svc = FaceWatchlistService(store, tmp_path, embedder=embedder)
    loose = svc.create_watchlist("loose", threshold=0.5)
    strict = svc.create_watchlist("strict", min_similarity=0.999)  # distance ≈ 0.19: nothing real matches
    assert strict.threshold == pytest.approx(distance_from_similarity(0.999))
    gallery = _gallery(faces_dir)
    ids = [svc.enrol(loose.id, "obama", p) for p in gallery["obama"]]
    svc.enrol(strict.id, "obama", gallery["obama"][0])
    probe = _probe(faces_dir, "obama1.jpg")
    assert [(m.watchlist, m.label) for m in svc.match(probe)] == [("loose", "obama")]
    assert svc.remove_entry(ids[0]) and not svc.remove_entry(ids[0])
    assert [m.entry_id for m in svc.match(probe)] == [ids[1]]
    svc.remove_entry(ids[1])
    assert svc.match(probe) == []
    with pytest.raises(NoFaceError):
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (900, 300), (255, 255, 255)).save(buf, "PNG")
        svc.enrol(loose.id, "blank", buf.getvalue())
    with pytest.raises(InvalidImageError):
        svc.enrol(loose.id, "junk", b"not an image")


def test_index_survives_restart_and_is_rebuilt_when_missing_or_stale(store, tmp_path: Path, faces_dir: Path,
                                                                     embedder: FaceEmbedder) -> None:
    svc = FaceWatchlistService(store, tmp_path, embedder=embedder)
    wl = svc.create_watchlist("vip")
    gallery = _gallery(faces_dir)
    for who in ("obama", "biden"):
        for p in gallery[who]:
            svc.enrol(wl.id, who, p)
    svc.flush()
    assert svc.index_path.is_file()
    probe = _probe(faces_dir, "obama_and_biden.jpg")
    expected = {m.label for m in svc.match(probe)}
    assert expected == {"obama", "biden"}

    # a restart loads the saved index: same answers
    again = FaceWatchlistService(store, tmp_path, embedder=embedder)
    assert {m.label for m in again.match(probe)} == expected and len(again.index()) == 4

    # another process enrols: this one's index is stale and catches up on its next match
    other = FaceWatchlistService(store, tmp_path, embedder=embedder)
    other.enrol(wl.id, "kit_harington", gallery["kit_harington"][0])
    assert _labels(again, faces_dir, "johnsnow_test1.jpg") == {"kit_harington"}

    # index file deleted: rebuilt from the database
    svc.flush()
    other.flush()
    svc.index_path.unlink()
    fresh = FaceWatchlistService(store, tmp_path, embedder=embedder)
    assert {m.label for m in fresh.match(probe)} == expected and len(fresh.index()) == 5
    assert svc.index_path.is_file()

    # an index file from an older state (stale generation) is diffed against the table
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.usearch").write_bytes(svc.index_path.read_bytes())
    (old / "index.usearch.json").write_bytes(Path(str(svc.index_path) + ".json").read_bytes())
    fresh.remove_entry(int(fresh.index().keys().max()))
    fresh.flush()
    for suffix in ("", ".json"):
        Path(str(svc.index_path) + suffix).write_bytes((old / f"index.usearch{suffix}").read_bytes())
    late = FaceWatchlistService(store, tmp_path, embedder=embedder)
    assert len(late.index()) == 4
    assert _labels(late, faces_dir, "johnsnow_test1.jpg") == set()


# -- worker processes ------------------------------------------------------------------------------------------------
def test_embed_pool_runs_in_worker_processes(faces_dir: Path, embedder: FaceEmbedder) -> None:
    from anfang.faces.workers import EmbedPool

    photo = _probe(faces_dir, "obama1.jpg")

    async def scenario() -> tuple[list[np.ndarray | None], type[BaseException] | None]:
        async with EmbedPool(workers=2) as pool:
            vecs = await asyncio.gather(*(pool.embed_one(photo) for _ in range(4)))
            try:
                await pool.embed_one(b"not an image")
            except InvalidImageError as exc:
                return list(vecs), type(exc)
        return list(vecs), None

    vecs, error = asyncio.run(scenario())
    local = embedder.embed_one(photo)
    assert error is InvalidImageError
    for v in vecs:
        assert v is not None and float(np.linalg.norm(v - local)) < 1e-5


@pytest.fixture
def nats_up() -> None:
    host, port = NATS_URL.rsplit("//", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as exc:
        _service_missing(f"NATS not reachable at {NATS_URL}: {exc}")


def test_nats_queue_group_workers_share_embedding_requests(nats_up: None, faces_dir: Path,
                                                            embedder: FaceEmbedder) -> None:
    from anfang.faces.workers import EmbedRequestError, NatsEmbedClient, serve_worker

    subject = f"test.faces.embed.{uuid.uuid4().hex[:8]}"
    photo = _probe(faces_dir, "johnsnow_test1.jpg")

    async def scenario():  # noqa: ANN202
        stop = asyncio.Event()
        readies = [asyncio.Event(), asyncio.Event()]
        workers = [asyncio.create_task(serve_worker(NATS_URL, subject=subject, stop=stop, ready=r)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        client = await NatsEmbedClient.connect(NATS_URL, subject=subject, timeout=30)
        try:
            vecs = await asyncio.gather(*(client.embed_one(photo) for _ in range(8)))
            try:
                await client.embed_one(b"definitely not a JPEG")
                error = None
            except EmbedRequestError as exc:
                error = str(exc)
            sky = io.BytesIO()
            from PIL import Image

            Image.new("RGB", (800, 600), (90, 140, 200)).save(sky, "PNG")
            none = await client.embed_one(sky.getvalue())
        finally:
            await client.close()
            stop.set()
        stats = await asyncio.gather(*workers)
        return vecs, error, none, stats

    vecs, error, none, stats = asyncio.run(scenario())
    local = embedder.embed_one(photo)
    assert all(v is not None and float(np.linalg.norm(v - local)) < 1e-5 for v in vecs)
    assert error is not None and "not a JPEG or PNG" in error
    assert none is None
    assert sum(s.handled for s in stats) == 10
    assert all(s.handled > 0 for s in stats), "both members of the queue group got work"


# -- command line ----------------------------------------------------------------------------------------------------
def test_cli_enrol_and_match(tmp_path: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from anfang.cli import app

    monkeypatch.delenv("ANFANG_DATABASE_URL", raising=False)
    monkeypatch.delenv("ANFANG_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    d = str(tmp_path / "data")
    photos = [str(p) for p in sorted((faces_dir / "train" / "rose_leslie").iterdir())]
    res = runner.invoke(app, ["faces", "enrol", "关注人员", *photos, "--label", "Rose Leslie", "--data-dir", d])
    assert res.exit_code == 0, res.output
    assert res.output.count("✓") == 2
    res = runner.invoke(app, ["faces", "match", str(faces_dir / "test" / "kit_with_rose.jpg"), "--data-dir", d])
    assert res.exit_code == 0, res.output
    assert "Rose Leslie" in res.output and "关注人员" in res.output
    res = runner.invoke(app, ["faces", "match", str(faces_dir / "test" / "obama1.jpg"), "--data-dir", d])
    assert res.exit_code == 1 and "no match" in res.output
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not really")
    res = runner.invoke(app, ["faces", "match", str(junk), "--data-dir", d])
    assert res.exit_code == 2 and "not a JPEG or PNG" in res.output
