"""Pydantic shapes of the registry's API: what comes in (validated) and goes out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.registry import vocab


def _enum(value: str | None, allowed: dict, what: str) -> str | None:
    if value is None:
        return None
    if value in allowed:
        return value
    for key, (zh, en) in allowed.items():
        if value in (zh, en):
            return key
    raise ValueError(f"{what}取值无效：{value}（可选：{'、'.join(z for z, _ in allowed.values())}）")


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(description="18位公民身份号码 (GB 11643)")
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = None
    hukou_address: str | None = Field(default=None, max_length=200)
    population_type: str = "registered"
    labels: list[str] = []
    address_id: int | None = None

    @field_validator("id_number")
    @classmethod
    def _id(cls, v: str) -> str:
        try:
            return ids.parse_id_number(v).number
        except ValidationError as e:
            raise ValueError(e.message) from None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        try:
            return ids.validate_phone(v)
        except ValidationError as e:
            raise ValueError(e.message) from None

    @field_validator("population_type")
    @classmethod
    def _ptype(cls, v: str) -> str:
        return _enum(v, vocab.POPULATION_TYPES, "人口类型")  # type: ignore[return-value]

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        return [_enum(x, vocab.PERSON_LABELS, "管理类别") for x in v]  # type: ignore[misc]


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=64)
    phone: str | None = None
    hukou_address: str | None = None
    population_type: str | None = None
    labels: list[str] | None = None
    address_id: int | None = None

    _phone = field_validator("phone")(PersonIn._phone.__func__)  # type: ignore[attr-defined]

    @field_validator("population_type")
    @classmethod
    def _ptype(cls, v: str | None) -> str | None:
        return _enum(v, vocab.POPULATION_TYPES, "人口类型")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_enum(x, vocab.PERSON_LABELS, "管理类别") for x in v]  # type: ignore[misc]


class HouseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address_id: int
    use: str = "self_occupied"
    owner_person_id: int | None = None
    owner_name: str | None = None
    owner_phone: str | None = None
    area_m2: float | None = Field(default=None, ge=0)

    @field_validator("use")
    @classmethod
    def _use(cls, v: str) -> str:
        return _enum(v, vocab.HOUSE_USES, "房屋用途")  # type: ignore[return-value]


class HousePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use: str | None = None
    owner_person_id: int | None = None
    owner_name: str | None = None
    owner_phone: str | None = None
    area_m2: float | None = Field(default=None, ge=0)

    @field_validator("use")
    @classmethod
    def _use(cls, v: str | None) -> str | None:
        return _enum(v, vocab.HOUSE_USES, "房屋用途")


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credit_code: str
    name: str = Field(min_length=1, max_length=128)
    kind: str | None = None
    address_id: int
    legal_person: str | None = None
    phone: str | None = None
    staff_count: int = Field(default=0, ge=0)

    @field_validator("credit_code")
    @classmethod
    def _code(cls, v: str) -> str:
        try:
            return ids.validate_credit_code(v)
        except ValidationError as e:
            raise ValueError(e.message) from None


class UnitPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=128)
    kind: str | None = None
    address_id: int | None = None
    legal_person: str | None = None
    phone: str | None = None
    staff_count: int | None = Field(default=None, ge=0)


class VehicleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plate: str
    plate_color: str = "blue"
    brand: str | None = None
    color: str | None = None
    owner_person_id: int | None = None

    @field_validator("plate")
    @classmethod
    def _plate(cls, v: str) -> str:
        try:
            return ids.validate_plate(v)
        except ValidationError as e:
            raise ValueError(e.message) from None

    @field_validator("plate_color")
    @classmethod
    def _color(cls, v: str) -> str:
        return _enum(v, vocab.PLATE_COLORS, "号牌颜色")  # type: ignore[return-value]


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent_id: int
    name: str = Field(min_length=1, max_length=64)
    code: str | None = Field(default=None, max_length=40, pattern=r"^\d+$")
    lon: float | None = Field(default=None, ge=73, le=136)
    lat: float | None = Field(default=None, ge=3, le=54)


class PlatePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plate_installed: bool | None = None
    plate_accurate: bool | None = None
    plate_labelled: bool | None = None


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: str = Field(description="verified | disputed | unverified")

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        return _enum(v, vocab.VERIFICATION, "核实状态")  # type: ignore[return-value]


class Page(BaseModel):
    items: list[dict]
    page: int
    size: int
    has_more: bool
    total: int | None = None
