"""Topics and JSON payloads of the devices that speak MQTT (documented in docs/iot.md).

Topic: ``anfang/v1/<kind>/<device_id>`` with kind one of door, smoke, electrical, hydrant, gas, perimeter.
Payload: a JSON object; ``ts`` (ISO 8601 or Unix seconds) is optional and defaults to the arrival time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOPIC_PREFIX = "anfang/v1"
KINDS = ("door", "smoke", "electrical", "hydrant", "gas", "perimeter")


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: datetime | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _epoch(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return datetime.fromtimestamp(v / 1000 if v > 1e11 else v, UTC)
        return v


class DoorMsg(_Msg):
    event: Literal["open", "denied", "forced", "held_open"] = "open"
    method: Literal["face", "card", "qrcode", "password", "remote", "exit_button", "visitor_pass"]
    person_id: int | None = None
    credential: str | None = Field(None, max_length=64, description="card number / face id / pass id")
    direction: Literal["in", "out"] | None = None
    image: str | None = Field(None, max_length=512, description="URL of the snapshot")


class SmokeMsg(_Msg):
    alarm: bool
    battery_percent: Annotated[float, Field(ge=0, le=100)] | None = None


class ElectricalMsg(_Msg):
    residual_current_ma: Annotated[float, Field(ge=0, le=100_000)] | None = None
    cable_temperature_c: Annotated[float, Field(ge=-50, le=500)] | None = None
    voltage_v: Annotated[float, Field(ge=0, le=1000)] | None = None
    current_a: Annotated[float, Field(ge=0, le=10_000)] | None = None


class HydrantMsg(_Msg):
    pressure_mpa: Annotated[float, Field(ge=-0.1, le=10)]


class GasMsg(_Msg):
    lel_percent: Annotated[float, Field(ge=0, le=100)]


class PerimeterMsg(_Msg):
    zone: str = Field(max_length=64)
    alarm: bool = True
    type: Literal["intrusion", "tamper", "fault"] = "intrusion"


MESSAGES: dict[str, type[_Msg]] = {"door": DoorMsg, "smoke": SmokeMsg, "electrical": ElectricalMsg,
                                   "hydrant": HydrantMsg, "gas": GasMsg, "perimeter": PerimeterMsg}


def parse_topic(topic: str) -> tuple[str, str]:
    """(kind, device id) of ``anfang/v1/<kind>/<device_id>``; ValueError otherwise."""
    parts = topic.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[2] not in MESSAGES or not parts[3]:
        raise ValueError(f"unknown topic {topic!r}: expected {TOPIC_PREFIX}/<{'|'.join(KINDS)}>/<device_id>")
    return parts[2], parts[3]
