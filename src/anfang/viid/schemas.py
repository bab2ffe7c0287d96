"""GA/T 1400 message shapes: lenient in (pydantic models that accept strings or numbers, extra fields, missing
optionals), exact out (builders that always emit every field the standard lists)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anfang.viid.ids import format_time

MEDIA_TYPE = "application/VIID+JSON;charset=UTF-8"

# StatusCode of ResponseStatusObject (GA/T 1400.4)
OK, OTHER_ERROR, DEVICE_BUSY, DEVICE_ERROR, INVALID_OPERATION = 0, 1, 2, 3, 4
INVALID_XML_FORMAT, INVALID_XML_CONTENT, INVALID_JSON_FORMAT, INVALID_JSON_CONTENT, REBOOT = 5, 6, 7, 8, 9
STATUS_STRINGS = {0: "OK", 1: "Other Error", 2: "Device Busy", 3: "Device Error", 4: "Invalid Operation",
                  5: "Invalid XML Format", 6: "Invalid XML Content", 7: "Invalid JSON Format",
                  8: "Invalid JSON Content", 9: "Reboot"}


def status_object(url: str, code: int, text: str | None = None, id_: str = "") -> dict[str, Any]:
    """One ResponseStatusObject with all five fields, StatusCode a number."""
    return {"RequestURL": url, "StatusCode": int(code), "StatusString": text or STATUS_STRINGS.get(code, ""),
            "Id": id_ or "", "LocalTime": format_time()}


def status_reply(url: str, code: int, text: str | None = None, id_: str = "") -> dict[str, Any]:
    return {"ResponseStatusObject": status_object(url, code, text, id_)}


def status_list_reply(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ResponseStatusListObject": {"ResponseStatusObject": objects}}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)


class ResponseStatus(_Lenient):
    RequestURL: str = ""
    StatusCode: int = 1
    StatusString: str = ""
    Id: str = ""
    LocalTime: str = ""

    @field_validator("StatusCode", mode="before")
    @classmethod
    def _code(cls, v: Any) -> int:  # peers send "0" as often as 0
        return int(str(v).strip() or 1)


def statuses_of(payload: Any) -> list[ResponseStatus]:
    """Every ResponseStatusObject of a peer's reply (list or single, wrapped or bare)."""
    if not isinstance(payload, dict):
        return []
    if "ResponseStatusListObject" in payload:
        inner = payload["ResponseStatusListObject"] or {}
        items = inner.get("ResponseStatusObject", []) if isinstance(inner, dict) else inner
    else:
        items = payload.get("ResponseStatusObject", payload)
    if isinstance(items, dict):
        items = [items]
    return [ResponseStatus.model_validate(x) for x in items if isinstance(x, dict)]


class DeviceIdObject(_Lenient):
    DeviceID: str = Field(min_length=1)


class SubscribeObject(_Lenient):
    SubscribeID: str = Field(min_length=1, max_length=64)
    Title: str = ""
    SubscribeDetail: str = ""
    ResourceURI: str = ""
    ApplicantName: str = ""
    ApplicantOrg: str = ""
    BeginTime: str | None = None
    EndTime: str | None = None
    ReceiveAddr: str = ""
    ReportInterval: int = 0
    Reason: str = ""
    OperateType: int = 0
    SubscribeStatus: int | None = None
    ResultImageDeclare: str | None = None
    ResultFeatureDeclare: str | None = None

    @field_validator("ReportInterval", "OperateType", mode="before")
    @classmethod
    def _int(cls, v: Any) -> int:
        return int(str(v).strip() or 0) if v is not None else 0


class DispositionObject(_Lenient):
    DispositionID: str = Field(min_length=1, max_length=64)
    Title: str = ""
    DispositionCategory: str = "2"
    TargetFeature: str = ""
    TargetImageURI: str | None = None
    PriorityLevel: int | None = None
    ApplicantName: str = ""
    ApplicantOrg: str = ""
    BeginTime: str | None = None
    EndTime: str | None = None
    OperateType: int = 0
    DispositionStatus: int | None = None
    ReceiveAddr: str = ""
    Reason: str = ""

    @field_validator("OperateType", mode="before")
    @classmethod
    def _int(cls, v: Any) -> int:
        return int(str(v).strip() or 0) if v is not None else 0
