"""GA/T 1400 identifiers and code tables (framework-free).

Composition (GA/T 1400.3):
- device / APE / platform id: 20 digits (GB/T 28181 style: 8-digit region + 2 trade + 3 type + 7 serial);
- SourceID / ImageID (图像信息基本要素 ID), 41 digits: device id (20) + source type (2: 01 video clip, 02 image,
  03 file …) + time ``YYYYMMDDhhmmss`` (14) + serial (5);
- FaceID / MotorVehicleID / PersonID / NonMotorVehicleID, 48 digits: SourceID (41) + object type (2: 01 person,
  02 motor vehicle, 03 non-motor vehicle, 04 thing, 05 scene, 06 face) + serial (5).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from anfang.core.ids import ascii_digits

CHINA_TZ = timezone(timedelta(hours=8), "CST")

OBJECT_TYPE = {"person": "01", "motor": "02", "nonmotor": "03", "thing": "04", "scene": "05", "face": "06"}
SOURCE_TYPES = {"01": "视频片段 video clip", "02": "图像 image", "03": "文件 file", "04": "视频 video stream"}

# ImageType (图像类型) of SubImageInfoObject.Type
IMAGE_TYPES: dict[str, str] = {
    "01": "车辆大图", "02": "车牌彩色小图", "03": "车牌二值化图", "04": "驾驶员面部特征图", "05": "副驾驶面部特征图",
    "06": "车标", "07": "违章合成图", "08": "过车合成图", "09": "车辆特写图", "10": "人员图", "11": "人脸图",
    "12": "非机动车图", "13": "物品图", "14": "场景图", "100": "一般图片",
}
# ColorType (颜色), used for PlateColor and VehicleColor
COLORS: dict[str, str] = {
    "1": "黑", "2": "白", "3": "灰", "4": "红", "5": "蓝", "6": "黄", "7": "橙", "8": "棕", "9": "绿", "10": "紫",
    "11": "青", "12": "粉", "13": "透明", "99": "其他",
}
# GenderCode (GB/T 2261.1)
GENDERS: dict[str, str] = {"0": "未知", "1": "男", "2": "女", "9": "未说明"}
# InfoKind
INFO_KINDS: dict[str, str] = {"0": "其他", "1": "自动采集", "2": "人工采集"}
FILE_FORMATS = {"jpeg", "jpg", "png", "bmp", "gif", "other"}
# SubscribeDetail (订阅类别)
SUBSCRIBE_DETAILS: dict[str, str] = {
    "1": "案件目录", "2": "单个案件内容", "3": "采集设备目录", "4": "采集设备状态", "5": "采集系统目录",
    "6": "采集系统状态", "7": "视频卡口目录", "8": "单个卡口记录", "9": "车道目录", "10": "单个车道记录",
    "11": "自动采集的人员信息", "12": "自动采集的人脸信息", "13": "自动采集的车辆信息",
    "14": "自动采集的非机动车辆信息", "15": "自动采集的物品信息", "16": "自动采集的文件信息",
}
DETAIL_KIND = {"11": "person", "12": "face", "13": "motor", "14": "nonmotor"}
KIND_DETAIL = {v: k for k, v in DETAIL_KIND.items()}


def _digits(value: object, n: int) -> bool:
    return isinstance(value, str) and len(value) == n and value.isascii() and value.isdigit()


def parse_time(value: object) -> datetime | None:
    """``YYYYMMDDhhmmss`` (China local time) → aware UTC datetime; None when absent or malformed.
    Lenient: also accepts ``YYYY-MM-DD hh:mm:ss`` / ISO 8601 and 17-digit forms with milliseconds."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if ascii_digits(text) and len(text) in (14, 17):
            dt = datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                          int(text[12:14]), tzinfo=CHINA_TZ)
            if len(text) == 17:
                dt += timedelta(milliseconds=int(text[14:]))
            return dt.astimezone(UTC)
        dt = datetime.fromisoformat(text.replace("T", " ").replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CHINA_TZ)
    return dt.astimezone(UTC)


def format_time(dt: datetime | None = None) -> str:
    """Aware datetime (default now) → ``YYYYMMDDhhmmss`` in China local time, as every reply carries it."""
    dt = dt or datetime.now(UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(CHINA_TZ).strftime("%Y%m%d%H%M%S")


def check_device_id(value: object) -> str | None:
    """None when ``value`` is a valid 20-digit device id, else the reason."""
    return None if _digits(value, 20) else "设备编码应为20位数字 / device id must be 20 digits"


def check_source_id(value: object) -> str | None:
    """None when ``value`` is a valid 41-digit SourceID / ImageID, else the reason."""
    if not _digits(value, 41):
        return "SourceID/ImageID 应为41位数字 / must be 41 digits"
    assert isinstance(value, str)
    if parse_time(value[22:36]) is None:
        return "SourceID 时间段无效 / bad time part"
    return None


def check_object_id(value: object, kind: str) -> str | None:
    """None when ``value`` is a valid 48-digit id of object ``kind`` (face, motor, person, nonmotor)."""
    if not _digits(value, 48):
        return "对象编码应为48位数字 / object id must be 48 digits"
    assert isinstance(value, str)
    bad = check_source_id(value[:41])
    if bad:
        return bad
    want = OBJECT_TYPE[kind]
    if value[41:43] != want:
        return f"对象类型码应为 {want} / object type code must be {want}"
    return None


def make_source_id(device_id: str, at: datetime, serial: int, source_type: str = "02") -> str:
    return f"{device_id}{source_type}{format_time(at)}{serial % 100000:05d}"


def make_object_id(source_id: str, kind: str, serial: int = 1) -> str:
    return f"{source_id}{OBJECT_TYPE[kind]}{serial % 100000:05d}"


def normalize_plate(plate: object) -> str:
    """Plate text for matching: upper case, no spaces or separators (``闽G·12345`` → ``闽G12345``)."""
    return "".join(ch for ch in str(plate or "").upper() if ch not in " ·.-•") if plate else ""
