"""PTZ control (GB/T 28181-2016 附录 A.3): the 8-byte ``PTZCmd`` carried in a ``Control``/``DeviceControl`` MESSAGE.

Byte 1 ``A5``; byte 2 the version (high nibble, 0) and a check nibble ((A + 5 + version) mod 16, so ``0F``);
byte 3 the low 8 bits of the address; byte 4 the command; bytes 5 and 6 data 1 / data 2 (pan / tilt speed, focus /
iris speed, or the preset number in byte 6); byte 7 the zoom speed (high nibble) and the high 4 address bits (low
nibble); byte 8 the checksum (sum of bytes 1–7 mod 256).

Command byte: ``00cc udlr`` for pan/tilt/zoom (bit 5 zoom out, bit 4 zoom in, bit 3 up, bit 2 down, bit 1 left,
bit 0 right; ``00`` stop); ``0100 ccnf`` for the lens (bit 3 iris close, bit 2 iris open, bit 1 focus near, bit 0
focus far); ``81`` / ``82`` / ``83`` set / call / delete a preset.

No PyPI library implements this command (the WVP and other platforms each hand-code it); it is eight bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from anfang.gb28181.manscdp import build

if TYPE_CHECKING:
    from anfang.gb28181.host import SipHost as GbServer  # the server's interface (host.py): no import cycle

_PTZ_BITS = {"right": 0x01, "left": 0x02, "down": 0x04, "up": 0x08, "zoomin": 0x10, "zoomout": 0x20,
             "upleft": 0x0A, "upright": 0x09, "downleft": 0x06, "downright": 0x05}
_LENS_BITS = {"focusfar": 0x41, "focusnear": 0x42, "irisopen": 0x44, "irisclose": 0x48}
_PRESET = {"preset_set": 0x81, "preset_call": 0x82, "preset_delete": 0x83}
ACTIONS = ("stop", *_PTZ_BITS, *_LENS_BITS, *_PRESET)
DEFAULT_PTZ_ROLES = ("city_admin", "county_admin", "police")  # the setting ``ptz_roles`` when it is empty


def may_steer(settings: object, role: object) -> bool:
    """The roles of the setting ``ptz_roles`` may steer cameras: the API accepts their PTZ commands and the console
    shows them the PTZ pad."""
    roles = getattr(settings, "ptz_roles", None) or DEFAULT_PTZ_ROLES
    return str(role) in {str(r) for r in roles}


class PtzError(ValueError):
    pass


@dataclass(frozen=True)
class PtzCommand:
    """A decoded PTZCmd. ``pan`` / ``tilt`` / ``zoom`` are -1, 0 or +1 (right / up / zoom in positive)."""

    address: int
    command: int
    pan: int = 0
    tilt: int = 0
    zoom: int = 0
    pan_speed: int = 0
    tilt_speed: int = 0
    zoom_speed: int = 0
    focus: int = 0  # +1 far, -1 near
    iris: int = 0  # +1 open, -1 close
    preset_op: str | None = None  # set | call | delete
    preset: int | None = None

    @property
    def stop(self) -> bool:
        return self.command == 0


def _frame(command: int, data1: int, data2: int, zoom_speed: int, address: int) -> str:
    raw = [0xA5, (0x0 << 4) | ((0xA + 0x5 + 0x0) % 16), address & 0xFF, command & 0xFF, data1 & 0xFF,
           data2 & 0xFF, ((zoom_speed & 0x0F) << 4) | ((address >> 8) & 0x0F)]
    raw.append(sum(raw) % 256)
    return bytes(raw).hex().upper()


def ptz_cmd(action: str, speed: int = 128, preset: int | None = None, address: int = 1) -> str:
    """The PTZCmd (16 hex digits) for ``action`` (one of ``ACTIONS``) at ``speed`` 0–255 (zoom uses its high 4 bits)."""
    if not 0 <= speed <= 255:
        raise PtzError("speed must be 0–255")
    if not 0 <= address <= 0xFFF:
        raise PtzError("address must be 0–4095")
    if action == "stop":
        return _frame(0x00, 0, 0, 0, address)
    if action in _PTZ_BITS:
        bits = _PTZ_BITS[action]
        pan_tilt = speed if bits & 0x0F else 0
        return _frame(bits, pan_tilt if bits & 0x03 else 0, pan_tilt if bits & 0x0C else 0,
                      speed >> 4 if bits & 0x30 else 0, address)
    if action in _LENS_BITS:
        bits = _LENS_BITS[action]
        return _frame(bits, speed if bits & 0x03 else 0, speed if bits & 0x0C else 0, 0, address)
    if action in _PRESET:
        if preset is None or not 1 <= preset <= 255:
            raise PtzError("preset must be 1–255")
        return _frame(_PRESET[action], 0, preset, 0, address)
    raise PtzError(f"unknown PTZ action {action!r}")


def parse_ptz(cmd_hex: str) -> PtzCommand:
    """Decode and check a PTZCmd; ``PtzError`` when it is not one (length, A5, check nibble, checksum)."""
    try:
        raw = bytes.fromhex(cmd_hex.strip())
    except ValueError:
        raise PtzError("PTZCmd is not hex") from None
    if len(raw) != 8 or raw[0] != 0xA5:
        raise PtzError("PTZCmd must be 8 bytes starting with A5")
    if raw[1] & 0x0F != (0xA + 0x5 + (raw[1] >> 4)) % 16:
        raise PtzError("bad PTZCmd check nibble")
    if sum(raw[:7]) % 256 != raw[7]:
        raise PtzError("bad PTZCmd checksum")
    address = raw[2] | ((raw[6] & 0x0F) << 8)
    cmd, d1, d2, zs = raw[3], raw[4], raw[5], raw[6] >> 4
    if cmd & 0xC0 == 0:
        return PtzCommand(address, cmd, pan=(cmd & 1) - ((cmd >> 1) & 1), tilt=((cmd >> 3) & 1) - ((cmd >> 2) & 1),
                          zoom=((cmd >> 4) & 1) - ((cmd >> 5) & 1), pan_speed=d1, tilt_speed=d2, zoom_speed=zs)
    if cmd & 0xF0 == 0x40:
        return PtzCommand(address, cmd, focus=(cmd & 1) - ((cmd >> 1) & 1), iris=((cmd >> 2) & 1) - ((cmd >> 3) & 1),
                          pan_speed=d1, tilt_speed=d2)
    ops = {v: k.split("_", 1)[1] for k, v in _PRESET.items()}
    if cmd in ops:
        return PtzCommand(address, cmd, preset_op=ops[cmd], preset=d2)
    raise PtzError(f"unsupported PTZ command byte {cmd:02X}")


def control_body(sn: int | str, channel_id: str, cmd_hex: str) -> bytes:
    return build("Control", "DeviceControl", sn, channel_id, [("PTZCmd", cmd_hex), ("Info", [("ControlPriority", 5)])])


async def device_control(server: GbServer, device_id: str, channel_id: str, cmd_hex: str,
                         timeout: float = 5.0) -> int:
    """Send ``Control/DeviceControl`` with ``PTZCmd`` for a channel of a registered device (or lower platform);
    returns the SIP status of the MESSAGE (480 when the device is not reachable, 408 when it did not answer)."""
    parse_ptz(cmd_hex)
    st = server.devices.get(device_id)
    if st is None:
        return 404
    body = control_body(next(server._sn), channel_id, cmd_hex)
    try:
        resp = await server._request(st, "MESSAGE", body, timeout=timeout)
    except LookupError:
        return 480
    except TimeoutError:
        return 408
    return resp.status or 500
