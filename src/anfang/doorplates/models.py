"""Tables of the door-plate room: plates (with their revocation list), resident declarations, patrol records,
visitor passes and visits, notices, tip-offs.

Every row that hangs off an address keeps ``address_id`` so scoping is the registry's one condition
(``security.scope.address_condition``) joined through ``addresses``.

ID numbers and phone numbers typed in by residents and reporters (declarations, tip-off contacts) are stored
AES-GCM encrypted like the registry's (``anfang.security.crypto``); a declaration's ID number is found by its keyed
hash ``id_number_hash`` (migration 0015_doorplates_encryption).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from anfang.security.crypto import EncryptedText, blind_id_number
from anfang.store.base import Base, UtcDateTime, utcnow


class DoorPlate(Base):
    """One printed QR plate on an address node. ``revoked_at`` set = on the revocation list."""

    __tablename__ = "door_plates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(16), unique=True)  # random, the token's public handle
    kid: Mapped[str] = mapped_column(String(8))  # key that signs this plate's token
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoke_reason: Mapped[str | None] = mapped_column(String(200))
    installed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    installed_by: Mapped[str | None] = mapped_column(String(64))
    install_lon: Mapped[float | None] = mapped_column(Float)
    install_lat: Mapped[float | None] = mapped_column(Float)
    install_distance_m: Mapped[float | None] = mapped_column(Float)


class Declaration(Base):
    """A resident's self-declaration on a household plate; pending until a grid worker or officer decides."""

    __tablename__ = "plate_declarations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8), default="new")  # new | confirm
    name: Mapped[str | None] = mapped_column(String(64))
    id_number: Mapped[str | None] = mapped_column(EncryptedText("plate_declarations.id_number", "id_number"))
    id_number_hash: Mapped[str | None] = mapped_column(String(32), index=True)  # keyed hash: the lookup column
    phone: Mapped[str | None] = mapped_column(EncryptedText("plate_declarations.phone"))
    relation: Mapped[str | None] = mapped_column(String(12))  # owner | family | tenant
    move_in: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)  # pending|verified|rejected
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    client: Mapped[str | None] = mapped_column(String(64))
    declared_by: Mapped[str | None] = mapped_column(String(64))  # username when logged in
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    review_note: Mapped[str | None] = mapped_column(String(200))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))

    @validates("id_number")
    def _hash_id_number(self, _key: str, value: str | None) -> str | None:
        self.id_number_hash = blind_id_number(value) if value else None
        return value


class PatrolRecord(Base):
    """巡查记录: a check-in by scanning a plate."""

    __tablename__ = "patrol_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(String(500))
    photo: Mapped[str | None] = mapped_column(String(200))  # path under the data dir


class VisitorPass(Base):
    """A time-limited visitor pass issued by a resident of a household."""

    __tablename__ = "visitor_passes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(16), unique=True)
    kid: Mapped[str] = mapped_column(String(8))
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)  # the household
    issued_by: Mapped[str] = mapped_column(String(64))
    visitor_name: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Visit(Base):
    """One check of a pass by a door's access control (granted or not)."""

    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pass_id: Mapped[int | None] = mapped_column(ForeignKey("visitor_passes.id"), index=True)
    door_address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    granted: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(String(32))
    door: Mapped[str | None] = mapped_column(String(64))  # the caller's device id


class Notice(Base):
    """A notice from the community or the police station to the residents of a building or community."""

    __tablename__ = "plate_notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)  # community or building node
    address_code: Mapped[str] = mapped_column(String(40), index=True)  # prefix of every address it reaches
    category: Mapped[str] = mapped_column(String(16))  # safety | anti_fraud | community
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    author_role: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TipOff(Base):
    """A tip-off or hazard report from a plate, routed to the address's grid worker and officer."""

    __tablename__ = "plate_tipoffs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket: Mapped[str] = mapped_column(String(16), unique=True)  # random: the reporter's handle to read the reply
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # tip | hazard
    text: Mapped[str] = mapped_column(Text)
    place: Mapped[str | None] = mapped_column(String(200))
    photo: Mapped[str | None] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(EncryptedText("plate_tipoffs.contact"))  # reporter's phone
    client: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8), default="open", index=True)  # open | replied
    reply: Mapped[str | None] = mapped_column(Text)
    replied_by: Mapped[str | None] = mapped_column(String(64))
    replied_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
