"""Which camera a warning opens (issue 15, item 5, 报警联动): face and plate warnings open the camera that captured
them; a warning at no camera's address opens the cameras of its community, the nearest first."""

from __future__ import annotations

import pytest

from anfang.devices.service import DeviceService
from anfang.media.linking import linked_channels

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
COMMUNITY = "350404001001"
NVR, GATE_CAM = "35040200001180000001", "35040200001320000002"  # an NVR, and a capture camera (GA/T 1400 APE too)
# channels of the NVR along a street, west to east (longitude), about 100 m apart
NVR_CHANNELS = [(f"3504020000131000000{i}", f"通道{i}", 117.6300 + 0.001 * i) for i in range(1, 6)]


@pytest.fixture
def cameras(store) -> DeviceService:  # noqa: ANN001
    svc = DeviceService(store)
    svc.upsert("gb28181", NVR, name="列东NVR", community_code=COMMUNITY, review="approved")
    svc.upsert_channels("gb28181", NVR, [{"channel_id": c, "name": n, "longitude": lon, "latitude": 26.2700}
                                         for c, n, lon in NVR_CHANNELS])
    svc.upsert("gb28181", GATE_CAM, name="东门抓拍机", community_code=COMMUNITY, review="approved",
               longitude=117.6400, latitude=26.2700)
    svc.upsert_channels("gb28181", GATE_CAM, [{"channel_id": GATE_CAM, "name": "东门抓拍"}])
    return svc


def _warning(**kw) -> dict:  # noqa: ANN003
    return {"source": "", "data": {}, "address_id": None, "community_code": COMMUNITY, "longitude": None,
            "latitude": None, **kw}


def test_face_and_plate_warnings_open_the_capturing_camera(cameras) -> None:  # noqa: ANN001
    face = _warning(rule="face.watchlist", category="face", source=GATE_CAM)
    assert [(x["channel_id"], x["reason"]) for x in linked_channels(cameras.store, face)] == [(GATE_CAM, "source")]
    # a capture camera that is one channel of an NVR: that channel, not its neighbours
    plate = _warning(rule="plate.watchlist", category="plate", source="x",
                     data={"ape_id": NVR_CHANNELS[3][0], "plate": "闽G12345"})
    assert [(x["channel_id"], x["reason"]) for x in linked_channels(cameras.store, plate)] == [
        (NVR_CHANNELS[3][0], "source")]


def test_a_warning_at_no_camera_opens_its_communitys_cameras_nearest_first(cameras) -> None:  # noqa: ANN001
    near_third = _warning(source="door-9", longitude=117.6331, latitude=26.2701)  # beside the 3rd channel
    got = [x["channel_id"] for x in linked_channels(cameras.store, near_third)]
    ids = [c for c, _n, _lon in NVR_CHANNELS]
    assert got == [ids[2], ids[3], ids[1], ids[4]]  # at most 4, by distance
    assert {x["reason"] for x in linked_channels(cameras.store, near_third)} == {"community"}
    east = _warning(source="door-9", longitude=117.6399, latitude=26.2700)
    assert linked_channels(cameras.store, east)[0]["channel_id"] == GATE_CAM  # the camera's own position counts
    elsewhere = _warning(source="door-9", community_code="350404001002")
    assert linked_channels(cameras.store, elsewhere) == []  # never a camera of another community
