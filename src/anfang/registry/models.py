"""一标三实 tables: regions, police organisation, grids, standard addresses, houses, persons, residences,
work units and vehicles.

Every address row carries its jurisdiction (county, town, community, 警务区, grid) so that any record hanging
off an address can be scoped with one indexed condition, without walking the tree.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from anfang.security.crypto import EncryptedText, blind_id_number, blind_phone
from anfang.store.base import Base, UtcDateTime, ordered_text, utcnow

# Enumerations are kept as short strings (readable in SQL, stable across backends); their allowed values and
# Chinese labels live in anfang.registry.vocab.


class Region(Base):
    """Administrative division: city (6), county (6), town/street (12, ...000), community/village (12)."""

    __tablename__ = "regions"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(ordered_text(200), index=True)
    level: Mapped[str] = mapped_column(String(16))  # city | county | town | community
    kind: Mapped[str | None] = mapped_column(String(16))  # community: 社区 'urban' | 行政村 'village'
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), index=True)


class PoliceStation(Base):
    """派出所."""

    __tablename__ = "police_stations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    county_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)


class PoliceArea(Base):
    """警务区 (community police area), under a station."""

    __tablename__ = "police_areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[int] = mapped_column(ForeignKey("police_stations.id"), index=True)
    station: Mapped[PoliceStation] = relationship(lazy="joined")


class Grid(Base):
    """网格 (grid of social governance), inside a community."""

    __tablename__ = "grids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    community_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)


class Address(Base):
    """标准地址 node below a community / village: community (gate) → building → unit → floor → room."""

    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(ordered_text(40), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"), index=True)
    level: Mapped[str] = mapped_column(String(16))  # community | building | unit | floor | room
    name: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(ordered_text(300), index=True)
    county_code: Mapped[str] = mapped_column(String(6), index=True)
    town_code: Mapped[str] = mapped_column(String(12), index=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    police_area_id: Mapped[int | None] = mapped_column(ForeignKey("police_areas.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    plate_installed: Mapped[bool] = mapped_column(Boolean, default=False)
    plate_accurate: Mapped[bool] = mapped_column(Boolean, default=False)
    plate_labelled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class VerifiedMixin:
    """Verification state of a 三实 record (实有人口 / 实有房屋 / 实有单位)."""

    verification: Mapped[str] = mapped_column(String(12), default="unverified", index=True)
    verified_by: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Person(VerifiedMixin, Base):
    """实有人口. ID number and phone are stored AES-GCM encrypted (anfang.security.crypto); equality search goes
    through their keyed hashes (blind indexes), kept in step by the validators below (the importer sets them
    itself)."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_number: Mapped[str] = mapped_column(EncryptedText("persons.id_number", "id_number"))
    id_number_hash: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    gender: Mapped[str] = mapped_column(String(1))  # M | F
    birth_date: Mapped[date] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(EncryptedText("persons.phone", "phone"))
    phone_hash: Mapped[str | None] = mapped_column(String(32), index=True)
    hukou_address: Mapped[str | None] = mapped_column(String(200))
    population_type: Mapped[str] = mapped_column(String(12), default="registered")  # registered|floating|overseas
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"), index=True)  # where the person lives
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    address: Mapped[Address | None] = relationship(lazy="raise")

    @validates("id_number")
    def _hash_id_number(self, _key: str, value: str) -> str:
        self.id_number_hash = blind_id_number(value)
        return value

    @validates("phone")
    def _hash_phone(self, _key: str, value: str | None) -> str | None:
        self.phone_hash = blind_phone(value) if value else None
        return value


class House(VerifiedMixin, Base):
    """实有房屋, at a room (or a village house-number) address."""

    __tablename__ = "houses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), unique=True)
    use: Mapped[str] = mapped_column(String(16), default="self_occupied")  # self_occupied|rental|vacant|business
    owner_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    owner_name: Mapped[str | None] = mapped_column(String(64))
    owner_phone: Mapped[str | None] = mapped_column(EncryptedText("houses.owner_phone"))
    area_m2: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    address: Mapped[Address] = relationship(lazy="raise")


class Residence(Base):
    """Who lives in which house, as what, from when to when."""

    __tablename__ = "residences"
    __table_args__ = (UniqueConstraint("person_id", "house_id", "since", name="uq_residence"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"), index=True)
    role: Mapped[str] = mapped_column(String(12))  # owner | family | tenant
    since: Mapped[date | None] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)


class WorkUnit(VerifiedMixin, Base):
    """实有单位: an organisation at an address."""

    __tablename__ = "work_units"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str | None] = mapped_column(String(32))
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)
    legal_person: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    staff_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    address: Mapped[Address] = relationship(lazy="raise")


class Vehicle(Base):
    __tablename__ = "vehicles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate: Mapped[str] = mapped_column(String(16), unique=True)
    plate_color: Mapped[str] = mapped_column(String(8), default="blue")  # blue|yellow|green|white|black
    brand: Mapped[str | None] = mapped_column(String(32))
    color: Mapped[str | None] = mapped_column(String(16))
    owner_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"), index=True)  # owner's residence
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


Index("ix_addresses_community_level", Address.community_code, Address.level)
# the 小区/村 list (address roots) in code order: a range of the community level, not a scan of every address
Index("ix_addresses_level_code", Address.level, Address.code)
