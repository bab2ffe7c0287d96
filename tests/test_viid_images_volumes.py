"""Capture images on several volumes (viid_image_volumes): a new day goes to the volume with the most free space,
reached through a symlink in the root; reads, the list of days and retention see no difference."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from anfang.app import create_app
from anfang.config import load_settings
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from anfang.viid.images import SegmentImageStore
from anfang.viid.simulator import face, face_list, make_jpeg
from test_viid import APE, PASSWORD, hdr, register

DAY = date(2026, 12, 7)
GIB = 1 << 30


@pytest.fixture
def free(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Free bytes per directory (by real path) as os.statvfs reports them; directories not listed: 1 GiB."""
    sizes: dict[str, int] = {}

    def fake(path: str | os.PathLike) -> object:
        return SimpleNamespace(f_bavail=sizes.get(os.path.realpath(path), GIB) // 4096, f_frsize=4096)

    monkeypatch.setattr(os, "statvfs", fake)
    return sizes


def _set(free: dict[str, int], path: Path, n: int) -> None:
    free[os.path.realpath(path)] = n


def test_day_lands_on_the_freest_volume_reads_back_and_a_later_day_lands_elsewhere(tmp_path: Path,
                                                                                    free: dict[str, int]) -> None:
    root, disk1, disk2 = tmp_path / "segments", tmp_path / "disk1", tmp_path / "disk2"
    disk1.mkdir()
    disk2.mkdir()
    images = SegmentImageStore(root, volumes=[disk1, disk2], fsync=False)
    _set(free, root, 1 * GIB)
    _set(free, disk1, 5 * GIB)
    _set(free, disk2, 3 * GIB)
    a, b = make_jpeg(3000, seed=1), make_jpeg(3000, seed=2)
    locs = images.put_many([a, b], day=DAY)
    assert locs[0].startswith("20261207/")  # locations are the same wherever the bytes live
    assert (root / "20261207").is_symlink() and (disk1 / "20261207" / "seg-000001.dat").is_file()
    assert [images.get(loc) for loc in locs] == [a, b]
    # the day stays where it was placed, whatever the free space does later
    _set(free, disk1, 0)
    more = images.put_many([make_jpeg(3000, seed=3)], day=DAY)
    assert images.get(more[0]) == make_jpeg(3000, seed=3)
    assert not (disk2 / "20261207").exists()
    # the next day goes to the volume that is now freest; the root itself when it is
    nxt = images.put_many([b], day=DAY + timedelta(days=1))
    assert (disk2 / "20261208" / "seg-000001.dat").is_file() and images.get(nxt[0]) == b
    _set(free, root, 9 * GIB)
    third = images.put_many([a], day=DAY + timedelta(days=2))
    assert (root / "20261209").is_dir() and not (root / "20261209").is_symlink() and images.get(third[0]) == a
    assert images.days() == ["20261207", "20261208", "20261209"]
    images.close()
    # a fresh process (restart) reads every location unchanged
    again = SegmentImageStore(root, volumes=[disk1, disk2], fsync=False)
    assert [again.get(loc) for loc in locs + more + nxt + third] == [a, b, make_jpeg(3000, seed=3), b, a]
    again.close()


def test_retention_drops_days_on_every_volume_files_and_symlinks(tmp_path: Path, free: dict[str, int]) -> None:
    root, disk1, disk2 = tmp_path / "segments", tmp_path / "disk1", tmp_path / "disk2"
    disk1.mkdir()
    disk2.mkdir()
    images = SegmentImageStore(root, volumes=[disk1, disk2], fsync=False)
    placed = {}
    for i, where in enumerate([disk1, disk2, root, disk1]):
        for place, n in ((root, 1), (disk1, 1), (disk2, 1)):
            _set(free, place, n * GIB)
        _set(free, where, 8 * GIB)
        day = DAY + timedelta(days=i)
        placed[day] = images.put_many([make_jpeg(2000, seed=i)], day=day)[0]
    assert (disk1 / "20261207").is_dir() and (disk2 / "20261208").is_dir() and (disk1 / "20261210").is_dir()
    dropped = images.drop_days_before(DAY + timedelta(days=3))
    assert dropped == 3
    assert images.days() == ["20261210"]
    for gone in ("20261207", "20261208", "20261209"):
        assert not os.path.lexists(root / gone)  # the symlink too
    assert not (disk1 / "20261207").exists() and not (disk2 / "20261208").exists()
    assert os.listdir(disk2) == []
    with pytest.raises(KeyError):
        images.get(placed[DAY])
    assert images.get(placed[DAY + timedelta(days=3)]) == make_jpeg(2000, seed=3)
    images.close()


def test_missing_volume_is_skipped_at_placement_with_a_warning(tmp_path: Path, free: dict[str, int]) -> None:
    root, disk1, gone = tmp_path / "segments", tmp_path / "disk1", tmp_path / "not-mounted"
    disk1.mkdir()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"x")
    images = SegmentImageStore(root, volumes=[gone, not_a_dir, disk1], fsync=False)
    _set(free, root, 1 * GIB)
    _set(free, disk1, 2 * GIB)
    _set(free, gone, 99 * GIB)  # would win if it were there
    with capture_logs() as logs:
        loc = images.put_many([b"abc"], day=DAY)[0]
    assert images.get(loc) == b"abc"
    assert (disk1 / "20261207").is_dir() and not gone.exists()
    skipped = {e["volume"] for e in logs if e["event"] == "viid_image_volume_unusable"}
    assert skipped == {str(gone), str(not_a_dir)}
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "viid_image_volume_unusable")
    images.close()


def test_a_vanished_volume_gives_not_found_refuses_writes_and_its_day_still_expires(tmp_path: Path,
                                                                                   free: dict[str, int]) -> None:
    root, disk1 = tmp_path / "segments", tmp_path / "disk1"
    disk1.mkdir()
    images = SegmentImageStore(root, volumes=[disk1], fsync=False)
    _set(free, disk1, 5 * GIB)
    loc = images.put_many([b"abc"], day=DAY)[0]
    images.close()
    (disk1 / "20261207" / "seg-000001.dat").unlink()
    (disk1 / "20261207").rmdir()  # the disk is unmounted / the directory removed
    with pytest.raises(KeyError):
        images.get(loc)
    assert images.days() == ["20261207"]
    # new bytes never go into a fresh directory that would reuse the missing segment numbers
    with pytest.raises(OSError, match="20261207"):
        images.put_many([b"def"], day=DAY)
    assert images.drop_days_before(DAY + timedelta(days=1)) == 1
    assert not os.path.lexists(root / "20261207") and images.days() == []
    # ...and a later run removes what the volume still held when it comes back
    (disk1 / "20261206").mkdir()
    (disk1 / "20261206" / "seg-000001.dat").write_bytes(b"old")
    assert images.drop_days_before(DAY + timedelta(days=1)) == 1
    assert not (disk1 / "20261206").exists()


def test_setting_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "anfang.toml"
    toml.write_text('viid_image_volumes = ["/data1/viid", "/data2/viid"]\n', encoding="utf-8")
    monkeypatch.setenv("ANFANG_CONFIG", str(toml))
    assert load_settings().viid_image_volumes == [Path("/data1/viid"), Path("/data2/viid")]
    monkeypatch.setenv("ANFANG_VIID_IMAGE_VOLUMES", "/data3/viid, /data4/viid")
    assert load_settings().viid_image_volumes == [Path("/data3/viid"), Path("/data4/viid")]
    monkeypatch.setenv("ANFANG_VIID_IMAGE_VOLUMES", '["/data5/viid"]')
    assert load_settings().viid_image_volumes == [Path("/data5/viid")]
    monkeypatch.delenv("ANFANG_VIID_IMAGE_VOLUMES")
    monkeypatch.delenv("ANFANG_CONFIG")
    monkeypatch.chdir(tmp_path / "..")
    assert load_settings().viid_image_volumes == []


def test_uploaded_capture_image_lands_on_the_configured_volume(tmp_path: Path, free: dict[str, int],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "disk2"
    disk.mkdir()
    toml = tmp_path / "anfang.toml"
    toml.write_text(f"viid_image_volumes = [{str(disk)!r}]\n".replace("'", '"'), encoding="utf-8")
    monkeypatch.setenv("ANFANG_CONFIG", str(toml))
    url = f"sqlite:///{tmp_path / 'anfang.db'}"
    upgrade(url)
    store = Store(url)
    settings = load_settings(data_dir=tmp_path / "var", database_url=url, viid_password=PASSWORD)
    _set(free, tmp_path / "var" / "viid" / "segments", 1 * GIB)
    _set(free, disk, 4 * GIB)
    jpeg = make_jpeg(10_000, seed=7)
    try:
        with TestClient(create_app(settings, store)) as c:
            register(c)
            f = face(APE, jpeg)
            assert c.post("/VIID/Faces", content=orjson.dumps(face_list([f])), headers=hdr()).status_code == 200
            stored = c.get(f"/VIID/Faces/{f['FaceID']}", headers=hdr()).json()["FaceObject"]
            path = stored["SubImageList"]["SubImageInfoObject"][0]["StoragePath"]
            assert c.get(path, headers=hdr()).content == jpeg
            day_dirs = [p for p in disk.iterdir() if len(p.name) == 8]
            assert len(day_dirs) == 1 and (tmp_path / "var" / "viid" / "segments" / day_dirs[0].name).is_symlink()
            assert jpeg in b"".join(p.read_bytes() for p in day_dirs[0].glob("seg-*.dat"))
            # the volume goes away: the image is "not found" for the device, not an internal error
            day_dirs[0].rename(tmp_path / "unmounted")
            gone = c.get(path, headers=hdr())
            assert gone.status_code == 404, gone.text
            assert gone.json()["ResponseStatusObject"]["StatusCode"] != 0
    finally:
        store.dispose()
