"""GB/T 28181-2016 20-digit codes (Appendix D): centre code (8 digits, GB/T 2260 region + base unit), industry
(2), type (3), network (1) and serial (6; the issue calls network + serial the "7-digit serial")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from anfang.core.ids import PROVINCE_CODES

_ID_RE = re.compile(r"\d{20}", re.ASCII)  # fullmatch: no trailing newline, no '٣'

TYPES: dict[str, str] = {
    "111": "DVR", "112": "视频服务器", "113": "编码器", "114": "解码器", "115": "视频切换矩阵",
    "116": "音频切换矩阵", "117": "报警控制器", "118": "NVR", "130": "混合硬盘录像机 HVR",
    "131": "摄像机", "132": "网络摄像机 IPC", "133": "显示器", "134": "报警输入设备", "135": "报警输出设备",
    "136": "语音输入设备", "137": "语音输出设备", "138": "移动传输设备", "139": "其他外围设备",
    "200": "中心信令控制服务器", "201": "Web应用服务器", "202": "媒体分发服务器", "203": "代理服务器",
    "204": "安全服务器", "205": "报警服务器", "206": "数据库服务器", "207": "GIS服务器", "208": "管理服务器",
    "209": "接入网关", "210": "媒体存储服务器", "211": "信令安全路由网关", "215": "业务分组", "216": "虚拟组织",
    "300": "中心用户", "400": "终端用户",
}
DEVICE_TYPES = frozenset({"111", "112", "113", "114", "115", "116", "117", "118", "130"})
CHANNEL_TYPES = frozenset({"131", "132", "133", "134", "135", "136", "137", "138", "139"})
PLATFORM_TYPES = frozenset({"200"})


class GbIdError(ValueError):
    """A string that is not a valid 20-digit GB/T 28181 code."""


@dataclass(frozen=True, slots=True)
class GbId:
    value: str

    @property
    def centre(self) -> str:
        return self.value[:8]

    @property
    def region(self) -> str:
        """The GB/T 2260 part of the centre code (6 digits; trailing 00 pairs mean a higher level)."""
        return self.value[:6]

    @property
    def industry(self) -> str:
        return self.value[8:10]

    @property
    def type_code(self) -> str:
        return self.value[10:13]

    @property
    def network(self) -> str:
        return self.value[13]

    @property
    def serial(self) -> str:
        return self.value[13:]

    @property
    def type_name(self) -> str:
        return TYPES.get(self.type_code, "扩展类型")

    @property
    def realm(self) -> str:
        """SIP realm (domain) of a server with this id: its first 10 digits."""
        return self.value[:10]

    def __str__(self) -> str:
        return self.value


def parse_gb_id(raw: str) -> GbId:
    """Validate a 20-digit code: digits only, a GB/T 2260 province; raises ``GbIdError`` with a zh-CN message."""
    value = (raw or "").strip()
    if not _ID_RE.fullmatch(value):
        raise GbIdError(f"国标编码应为20位数字 / GB/T 28181 id must be 20 digits: {value!r}")
    if int(value[:2]) not in PROVINCE_CODES:
        raise GbIdError(f"国标编码的行政区划代码无效 / bad region code in {value}")
    return GbId(value)


def is_gb_id(raw: str) -> bool:
    try:
        parse_gb_id(raw)
    except GbIdError:
        return False
    return True


def make_gb_id(centre: str, type_code: str, serial: int, industry: str = "00", network: str = "0") -> str:
    """Compose an id: 8-digit centre code (a 6-digit region is padded with 00), type, 6-digit serial."""
    centre = (centre + "00000000")[:8]
    value = f"{centre}{industry:0>2}{type_code:0>3}{network}{serial:06d}"
    return parse_gb_id(value).value
