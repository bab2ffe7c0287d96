"""Door-plate operations: plates and their tokens, the scan view by role, installer confirmation, resident
declarations and their verification, patrols and coverage, visitor passes, notices and tip-offs.

Framework-free (the scan pages, the access-control API and the CLI call it). Scoping is the registry's
``address_condition``; masking is ``security.masking``; every view of personal data is appended to the audit chain.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from anfang.core import ids
from anfang.core.errors import AnfangError, Conflict, Forbidden, NotFound, ValidationError
from anfang.doorplates.models import Declaration, DoorPlate, Notice, PatrolRecord, TipOff, Visit, VisitorPass
from anfang.doorplates.tokens import Keyring, TokenRejected, new_serial
from anfang.registry.metrics import PLATED_LEVELS
from anfang.registry.models import Address, Grid, House, Person, Region, Residence
from anfang.registry.service import owners_among
from anfang.security import audit
from anfang.security.crypto import blind_id_number
from anfang.security.masking import mask_fields
from anfang.security.roles import Role
from anfang.security.scope import Principal, address_condition
from anfang.store.base import utcnow
from anfang.store.engine import Store

log = logging.getLogger("anfang.doorplates")

CST = timezone(timedelta(hours=8), "CST")  # China Standard Time, no daylight saving: months are counted in it
# Patrol points: gates, buildings and unit doors (a grid worker does not patrol every household door).
PATROL_LEVELS = ("community", "building", "unit")
# Who verifies a resident's declaration (seed: 网格员 / 社区民警 核实).
DECLARATION_VERIFIERS = frozenset({Role.police, Role.grid_worker})
# Who may confirm a plate's installation on site: the registry's plate editors.
INSTALLERS = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.grid_worker, Role.property_staff})
PATROLLERS = frozenset({Role.police, Role.grid_worker})
NOTICE_AUTHORS = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.grid_worker, Role.property_staff})
TIPOFF_HANDLERS = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.grid_worker})
NOTICE_CATEGORIES = {"safety": ("安全提示", "Safety"), "anti_fraud": ("反诈提醒", "Anti-fraud"),
                     "community": ("社区通知", "Community")}
TIPOFF_KINDS = {"tip": ("线索举报", "Tip-off"), "hazard": ("隐患报告", "Hazard")}
MAX_PASS_HOURS = 72  # a visitor pass is for a visit, not a key: three days at most
MAX_PHOTO_BYTES = 5 * 1024 * 1024
_PHOTO_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}


class PlateRejected(AnfangError):
    """A scanned token that is forged, unknown or revoked; the page says so plainly."""

    status = 404
    code = "plate_rejected"

    def __init__(self, reason: str) -> None:
        messages = {
            "revoked": "该门牌二维码已作废，请联系社区更换新门牌。/ This door plate has been revoked; ask the "
                       "community for a new one.",
        }
        super().__init__(messages.get(reason, "无效的门牌二维码：不是本平台签发的门牌，或已被篡改。/ Invalid door "
                                              "plate code: not issued by this platform, or altered."))
        self.reason = reason


@dataclass
class Plate:
    plate_id: int
    serial: str
    token: str
    address_id: int


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius)."""
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def month_range(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month 'YYYY-MM' in China Standard Time."""
    try:
        y, m = (int(x) for x in month.split("-"))
        start = datetime(y, m, 1, tzinfo=CST)
    except ValueError:
        raise ValidationError(f"月份格式应为 YYYY-MM：{month} / month must be YYYY-MM") from None
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=CST)
    return start.astimezone(UTC), end.astimezone(UTC)


def current_month() -> str:
    return utcnow().astimezone(CST).strftime("%Y-%m")


class DoorplateService:
    def __init__(self, store: Store, keyring: Keyring, *, data_dir: Path, accuracy_m: float = 30.0) -> None:
        self.store = store
        self.keyring = keyring
        self.data_dir = Path(data_dir)
        self.accuracy_m = accuracy_m

    # ---- plates -------------------------------------------------------------------------------------------------
    def _plate_of(self, s: Session, address_id: int) -> DoorPlate:
        """The address's live plate, issued on first use."""
        plate = s.scalar(select(DoorPlate).where(DoorPlate.address_id == address_id, DoorPlate.revoked_at.is_(None))
                         .order_by(DoorPlate.id.desc()).limit(1))
        if plate is None:
            plate = DoorPlate(serial=new_serial(), kid=self.keyring.current, address_id=address_id, issued_at=utcnow())
            s.add(plate)
            s.flush()
        return plate

    def _token(self, plate: DoorPlate) -> str:
        return self.keyring.sign(plate.serial, kid=plate.kid)

    def plate_for(self, address_id: int) -> Plate:
        """The live plate of one address node (issued when it has none). Plates carry no personal data."""
        with self.store.session() as s:
            a = s.get(Address, address_id)
            if a is None:
                raise NotFound(f"地址不存在：{address_id}")
            if a.level not in PLATED_LEVELS:
                raise ValidationError("楼层不设门牌 / floors carry no door plate")
            plate = self._plate_of(s, address_id)
            return Plate(plate.id, plate.serial, self._token(plate), address_id)

    def plates_under(self, address_code: str) -> list[tuple[dict[str, Any], Plate]]:
        """Every plated node under (and including) an address code — a community's or a building's — with its
        plate, in address order: the rows of a printable sheet."""
        with self.store.session() as s:
            nodes = list(s.scalars(select(Address).where(Address.code >= address_code,
                                                        Address.code < address_code + "\U0010ffff",
                                                        Address.level.in_(PLATED_LEVELS)).order_by(Address.code)))
            if not nodes:
                raise NotFound(f"没有该编码下的地址：{address_code} / no address under this code")
            out = []
            for a in nodes:
                plate = self._plate_of(s, a.id)
                out.append(({"id": a.id, "code": a.code, "name": a.name, "full_name": a.full_name,
                             "level": a.level}, Plate(plate.id, plate.serial, self._token(plate), a.id)))
        return out

    def revoke(self, p: Principal, address_id: int, reason: str = "") -> Plate:
        """Put the address's live plate on the revocation list and issue a new one (to be printed)."""
        if p.role not in INSTALLERS:
            raise Forbidden("当前角色无权作废门牌 / role may not revoke plates")
        with self.store.session() as s:
            self._in_scope(s, p, address_id)
            old = self._plate_of(s, address_id)
            old.revoked_at, old.revoked_by, old.revoke_reason = utcnow(), p.username, reason[:200] or None
            s.flush()
            new = self._plate_of(s, address_id)
            out = Plate(new.id, new.serial, self._token(new), address_id)
        audit.record(self.store, p, "update", "doorplate", [address_id], detail=f"revoke={old.serial}")
        return out

    def resolve(self, token: str, p: Principal | None = None) -> tuple[DoorPlate, Address]:
        """The plate and address behind a scanned token. Forged, unknown-key and revoked tokens raise
        PlateRejected and are logged (and audited, under the scanning principal)."""
        reason = None
        try:
            _kid, serial = self.keyring.verify(token)
        except TokenRejected as exc:
            reason, serial = exc.reason, None
        result = None
        if serial is not None:
            with self.store.session() as s:
                row = s.execute(select(DoorPlate, Address).join(Address, DoorPlate.address_id == Address.id)
                                .where(DoorPlate.serial == serial)).first()
                if row is None:
                    reason = "unknown_serial"
                elif row[0].revoked_at is not None:
                    reason = "revoked"
                else:
                    result = (row[0], row[1])
                    s.expunge_all()
        if result is None:
            log.warning("door plate token rejected: %s (client %s)", reason, p.client if p else None)
            audit.record(self.store, p or Principal.anonymous(), "scan_rejected", "doorplate", [],
                         detail=f"reason={reason};token={(token or '')[:48]}")
            raise PlateRejected(reason or "malformed")
        return result

    @staticmethod
    def _in_scope(s: Session, p: Principal, address_id: int) -> Address:
        a = s.scalar(select(Address).where(Address.id == address_id, address_condition(p)))
        if a is None:
            raise Forbidden("该地址不在您的辖区内 / address outside your jurisdiction")
        return a

    # ---- the scan page ------------------------------------------------------------------------------------------
    @staticmethod
    def view_kind(s: Session, p: Principal, a: Address) -> str:
        """officer | grid | property | public — what the scanning principal may see on this plate."""
        if p.role in (Role.police, Role.grid_worker, Role.property_staff):
            in_scope = s.scalar(select(Address.id).where(Address.id == a.id, address_condition(p))) is not None
            if in_scope:
                return {Role.police: "officer", Role.grid_worker: "grid", Role.property_staff: "property"}[p.role]
        return "public"

    def scan(self, p: Principal, token: str) -> dict[str, Any]:
        """What the plate page shows to p. Officer: address, occupants with management categories, owner,
        patrol records, pending declarations. Grid worker: address, occupants (masked ID numbers), pending
        declarations to verify, patrol check-in. Property staff: address, owner contact, house use. Anyone else:
        only the public address (plus the resident services open to all)."""
        plate, a = self.resolve(token, p)
        with self.store.session() as s:
            kind = self.view_kind(s, p, a)
            house = s.scalar(select(House).where(House.address_id == a.id))
            out: dict[str, Any] = {
                "view": kind, "token": token,
                "address": {"id": a.id, "full_name": a.full_name, "name": a.name, "level": a.level, "code": a.code},
                "plate": {"serial": plate.serial, "installed": a.plate_installed, "accurate": a.plate_accurate,
                          "installed_at": plate.installed_at, "distance_m": plate.install_distance_m},
                "household": a.level == "room" or house is not None,
                "notices": self._notices(s, a.code),
                "can_install": p.role in INSTALLERS and a.level in PLATED_LEVELS
                and s.scalar(select(Address.id).where(Address.id == a.id, address_condition(p))) is not None,
                "can_patrol": kind in ("officer", "grid") and a.level in PATROL_LEVELS + ("room",),
                "can_verify": kind in ("officer", "grid"),
                "resident_here": False,
            }
            persons: list[int] = []
            if kind in ("officer", "grid"):
                out["occupants"] = self._occupants(s, p, a, house)
                persons = [o["id"] for o in out["occupants"]]
                out["pending"] = self._pending(s, p, a.id)
            if kind == "officer":
                out["owner"] = mask_fields(p.role, {"owner_name": house.owner_name, "owner_phone": house.owner_phone}) \
                    if house else None
                out["patrols"] = [{"at": r.at, "username": r.username, "note": r.note, "photo": bool(r.photo)}
                                  for r in s.scalars(select(PatrolRecord).where(PatrolRecord.address_id == a.id)
                                                     .order_by(PatrolRecord.at.desc()).limit(20))]
            if kind == "property":
                out["owner"] = mask_fields(p.role, {"owner_name": house.owner_name, "owner_phone": house.owner_phone}) \
                    if house else None
                out["house_use"] = house.use if house else None
            if p.role is Role.resident and p.person_id is not None:
                here = s.scalar(select(Person.address_id).where(Person.id == p.person_id))
                out["resident_here"] = here == a.id
                if out["resident_here"]:
                    out["my_household"] = [
                        {"name": n, "relation": r, "verification": v} for n, r, v in s.execute(
                            select(Person.name, Residence.role, Person.verification)
                            .outerjoin(Residence, (Residence.person_id == Person.id)
                                       & (Residence.house_id == (house.id if house else -1)))
                            .where(Person.address_id == a.id).order_by(Person.id))]
                    out["passes"] = [
                        {"visitor_name": v.visitor_name, "valid_until": v.valid_until,
                         "token": self.keyring.sign(v.serial, purpose="pass", kid=v.kid)}
                        for v in s.scalars(select(VisitorPass).where(VisitorPass.address_id == a.id,
                                                                    VisitorPass.issued_by == p.username,
                                                                    VisitorPass.valid_until > utcnow())
                                           .order_by(VisitorPass.id.desc()).limit(5))]
        detail = f"view={kind}" + (f";persons={','.join(map(str, persons))}" if persons else "")
        audit.record(self.store, p, "read", "doorplate", [a.id], detail=detail)
        return out

    @staticmethod
    def _occupants(s: Session, p: Principal, a: Address, house: House | None) -> list[dict[str, Any]]:
        rows = s.execute(select(Person, Residence.role)
                         .outerjoin(Residence, (Residence.person_id == Person.id)
                                    & (Residence.house_id == (house.id if house else -1)))
                         .where(Person.address_id == a.id).order_by(Person.id))
        rows = list(rows)
        owners = owners_among(s, p, [per.id for per, _ in rows])
        return [mask_fields(p.role, {"id": per.id, "name": per.name, "id_number": per.id_number, "phone": per.phone,
                                     "labels": list(per.labels or []), "relation": rel,
                                     "verification": per.verification}, owner=per.id in owners)
                for per, rel in rows]

    @staticmethod
    def _pending(s: Session, p: Principal, address_id: int) -> list[dict[str, Any]]:
        return [mask_fields(p.role, {"id": d.id, "kind": d.kind, "name": d.name, "id_number": d.id_number,
                                     "phone": d.phone, "relation": d.relation,
                                     "move_in": d.move_in.isoformat() if d.move_in else None,
                                     "created_at": d.created_at})
                for d in s.scalars(select(Declaration).where(Declaration.address_id == address_id,
                                                             Declaration.status == "pending")
                                   .order_by(Declaration.id))]

    # ---- installation and accuracy ------------------------------------------------------------------------------
    def confirm_installation(self, p: Principal, token: str, lon: float | None, lat: float | None) -> dict[str, Any]:
        """An installer on site scans the plate: it is installed; when the scan's position is within the
        configured distance of the address's coordinates, it is accurate too. Sets the Address flags that the
        registry's plate installation / accuracy rates count."""
        plate, a = self.resolve(token, p)
        if p.role not in INSTALLERS:
            raise Forbidden("当前角色无权确认门牌安装 / role may not confirm plate installation")
        with self.store.session() as s:
            addr = self._in_scope(s, p, a.id)
            row = s.get(DoorPlate, plate.id)
            assert row is not None
            distance = None
            if lon is not None and lat is not None and addr.lon is not None and addr.lat is not None:
                if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                    raise ValidationError("坐标无效 / invalid position")
                distance = distance_m(lon, lat, addr.lon, addr.lat)
            accurate = distance is not None and distance <= self.accuracy_m
            addr.plate_installed = True
            addr.plate_accurate = accurate
            row.installed_at, row.installed_by = utcnow(), p.username
            row.install_lon, row.install_lat, row.install_distance_m = lon, lat, distance
        audit.record(self.store, p, "update", "address", [a.id],
                     detail=f"plate_install;distance={'' if distance is None else round(distance, 1)}")
        return {"installed": True, "accurate": accurate, "distance_m": distance, "threshold_m": self.accuracy_m}

    # ---- resident declarations ----------------------------------------------------------------------------------
    def declare(self, p: Principal, token: str, *, name: str, id_number: str, phone: str | None, relation: str,
                move_in: date | None) -> int:
        """A resident declares an occupant on a household plate. Nothing in the registry changes until a grid
        worker or officer verifies it."""
        _plate, a = self.resolve(token, p)
        name = (name or "").strip()
        if not 1 <= len(name) <= 32:
            raise ValidationError("请填写姓名 / name is required")
        info = ids.parse_id_number(id_number)
        phone = ids.validate_phone(phone) if phone and phone.strip() else None
        if relation not in ("owner", "family", "tenant"):
            raise ValidationError(f"居住关系无效：{relation} / invalid relation")
        if move_in is not None and move_in > date.today() + timedelta(days=31):
            raise ValidationError("入住日期不能晚于下月 / move-in date too far in the future")
        with self.store.session() as s:
            if not self._is_household(s, a):
                raise ValidationError("只有住户门牌可以申报居住人员 / only household plates take declarations")
            dup = s.scalar(select(Declaration.id).where(Declaration.address_id == a.id,
                                                        Declaration.id_number_hash == blind_id_number(info.number),
                                                        Declaration.status == "pending"))
            if dup is not None:
                raise Conflict("该人员已有待核实的申报，请等待网格员或民警核实 / a declaration for this person is "
                               "already pending")
            d = Declaration(address_id=a.id, kind="new", name=name, id_number=info.number, phone=phone,
                            relation=relation, move_in=move_in, client=p.client,
                            declared_by=p.username if p.user_id is not None else None)
            s.add(d)
            s.flush()
            decl_id = d.id
        audit.record(self.store, p, "create", "declaration", [decl_id], detail=f"address={a.id}")
        return decl_id

    def confirm_household(self, p: Principal, token: str) -> int:
        """A logged-in resident of the household confirms that the current list of occupants is right."""
        _plate, a = self.resolve(token, p)
        with self.store.session() as s:
            if p.role is not Role.resident or p.person_id is None or \
                    s.scalar(select(Person.address_id).where(Person.id == p.person_id)) != a.id:
                raise Forbidden("只有本户居民可以确认住户名单 / only a resident of this household may confirm it")
            if s.scalar(select(Declaration.id).where(Declaration.address_id == a.id, Declaration.kind == "confirm",
                                                     Declaration.status == "pending")) is not None:
                raise Conflict("本户已有待核实的确认 / a confirmation is already pending")
            d = Declaration(address_id=a.id, kind="confirm", client=p.client, declared_by=p.username)
            s.add(d)
            s.flush()
            decl_id = d.id
        audit.record(self.store, p, "create", "declaration", [decl_id], detail=f"confirm;address={a.id}")
        return decl_id

    @staticmethod
    def _is_household(s: Session, a: Address) -> bool:
        return a.level == "room" or s.scalar(select(House.id).where(House.address_id == a.id)) is not None

    def review(self, p: Principal, declaration_id: int, accept: bool, note: str = "") -> dict[str, Any]:
        """A grid worker or officer verifies (or rejects) a declaration. Accepting a new occupant creates or
        updates the Person and Residence as verified — but never overwrites a verified person's data."""
        if p.role not in DECLARATION_VERIFIERS:
            raise Forbidden("只有网格员或社区民警可以核实申报 / only grid workers and officers verify declarations")
        with self.store.session() as s:
            d = s.get(Declaration, declaration_id)
            if d is None:
                raise NotFound(f"申报不存在：{declaration_id}")
            a = self._in_scope(s, p, d.address_id)
            if d.status != "pending":
                raise Conflict("该申报已处理 / declaration already decided")
            now = utcnow()
            d.reviewed_by, d.reviewed_at, d.review_note = p.username, now, note[:200] or None
            touched: list[int] = []
            if not accept:
                d.status = "rejected"
            elif d.kind == "confirm":
                d.status = "verified"
                for person in s.scalars(select(Person).where(Person.address_id == a.id,
                                                             Person.verification == "unverified")):
                    person.verification, person.verified_by, person.verified_at = "verified", p.username, now
                    touched.append(person.id)
            else:
                person = self._apply_new(s, p, d, a, now)
                d.status, d.person_id = "verified", person.id
                touched.append(person.id)
            out = {"id": d.id, "status": d.status, "person_ids": touched}
        audit.record(self.store, p, "update", "declaration", [declaration_id],
                     detail=f"status={out['status']};persons={','.join(map(str, touched))}")
        return out

    @staticmethod
    def _apply_new(s: Session, p: Principal, d: Declaration, a: Address, now: datetime) -> Person:
        assert d.id_number is not None and d.name is not None
        info = ids.parse_id_number(d.id_number)
        person = s.scalar(select(Person).where(Person.id_number == info.number))
        if person is None:
            person = Person(id_number=info.number, name=d.name, gender=info.gender, birth_date=info.birth_date,
                            phone=d.phone, population_type="registered" if a.county_code == info.region_code[:6]
                            else "floating", labels=[], address_id=a.id)
            s.add(person)
        elif person.verification == "verified":
            # Verified data is never overwritten by a declaration: a different name means the declaration or the
            # record is wrong, and a person must sort that out in the console.
            if person.name != d.name:
                raise Conflict("申报姓名与已核实的人员信息不一致，请在控制台核对后处理 / the declared name differs "
                               "from the verified record; check it in the console")
            if person.address_id != a.id:
                person.address_id = a.id  # moving house is what the declaration is about; identity stays
        else:
            person.name = d.name
            if d.phone:
                person.phone = d.phone
            person.address_id = a.id
        person.verification, person.verified_by, person.verified_at = "verified", p.username, now
        s.flush()
        house = s.scalar(select(House).where(House.address_id == a.id))
        if house is None:
            house = House(address_id=a.id, use="rental" if d.relation == "tenant" else "self_occupied")
            s.add(house)
            s.flush()
        live = s.scalar(select(Residence.id).where(Residence.person_id == person.id, Residence.house_id == house.id,
                                                   Residence.until.is_(None)))
        if live is None:
            s.add(Residence(person_id=person.id, house_id=house.id, role=d.relation or "family",
                            since=d.move_in or now.astimezone(CST).date()))
        return person

    def pending_declarations(self, p: Principal, limit: int = 200) -> list[dict[str, Any]]:
        if p.role not in DECLARATION_VERIFIERS | {Role.city_admin, Role.county_admin}:
            raise Forbidden("当前角色无权查看申报 / role may not see declarations")
        with self.store.session() as s:
            rows = s.execute(select(Declaration, Address.full_name).join(Address, Declaration.address_id == Address.id)
                             .where(address_condition(p), Declaration.status == "pending")
                             .order_by(Declaration.id).limit(limit)).all()
            out = [mask_fields(p.role, {"id": d.id, "kind": d.kind, "name": d.name, "id_number": d.id_number,
                                        "phone": d.phone, "relation": d.relation, "address": full,
                                        "address_id": d.address_id, "created_at": d.created_at})
                   for d, full in rows]
        audit.record(self.store, p, "read", "declaration", [x["id"] for x in out])
        return out

    # ---- patrols ------------------------------------------------------------------------------------------------
    def check_in(self, p: Principal, token: str, *, lon: float | None, lat: float | None, note: str = "",
                 photo: bytes | None = None) -> int:
        _plate, a = self.resolve(token, p)
        if p.role not in PATROLLERS:
            raise Forbidden("只有网格员和社区民警可以巡查签到 / only grid workers and officers check in")
        path = self.save_photo("patrol", photo) if photo else None
        with self.store.session() as s:
            addr = self._in_scope(s, p, a.id)
            r = PatrolRecord(address_id=addr.id, grid_id=addr.grid_id, user_id=p.user_id, username=p.username,
                             role=p.role.value, at=utcnow(), lon=lon, lat=lat, note=(note or "").strip()[:500] or None,
                             photo=path)
            s.add(r)
            s.flush()
            rid = r.id
        audit.record(self.store, p, "create", "patrol", [rid], detail=f"address={a.id}")
        return rid

    def coverage(self, p: Principal, month: str | None = None) -> list[dict[str, Any]]:
        """Patrol coverage per grid in p's jurisdiction for a month: patrol points (gates, buildings, unit doors)
        checked in at least once, over all patrol points of the grid."""
        month = month or current_month()
        start, end = month_range(month)
        scope = address_condition(p)
        with self.store.session() as s:
            points = dict(s.execute(select(Address.grid_id, func.count()).where(
                scope, Address.level.in_(PATROL_LEVELS), Address.grid_id.is_not(None)).group_by(Address.grid_id)).all())
            covered = dict(s.execute(
                select(Address.grid_id, func.count(distinct(PatrolRecord.address_id))).select_from(PatrolRecord)
                .join(Address, PatrolRecord.address_id == Address.id)
                .where(scope, Address.level.in_(PATROL_LEVELS), PatrolRecord.at >= start, PatrolRecord.at < end)
                .group_by(Address.grid_id)).all())
            visits = dict(s.execute(
                select(Address.grid_id, func.count()).select_from(PatrolRecord)
                .join(Address, PatrolRecord.address_id == Address.id)
                .where(scope, PatrolRecord.at >= start, PatrolRecord.at < end).group_by(Address.grid_id)).all())
            grids = {g.id: g for g in s.scalars(select(Grid).where(Grid.id.in_(list(points))))}
            # "第1网格" alone is ambiguous over a county or the city: each row names its community (full name)
            places = dict(s.execute(select(Region.code, Region.full_name).where(
                Region.code.in_({g.community_code for g in grids.values()}))).all())
        rows = []
        for gid in sorted(points, key=lambda g: grids[g].code if g in grids else ""):
            n, c = points[gid], covered.get(gid, 0)
            g = grids.get(gid)
            rows.append({"grid_id": gid, "grid": g.name if g else str(gid), "code": g.code if g else "",
                         "community": places.get(g.community_code, "") if g else "",
                         "points": n, "covered": c, "checkins": visits.get(gid, 0),
                         "rate": c / n if n else None, "month": month})
        return rows

    def save_photo(self, kind: str, data: bytes) -> str:
        """Store an uploaded JPEG/PNG under <data_dir>/doorplates/<kind>/YYYY-MM/; returns the relative path."""
        if len(data) > MAX_PHOTO_BYTES:
            raise ValidationError("照片不能超过5MB / photo larger than 5 MB")
        ext = next((e for magic, e in _PHOTO_MAGIC.items() if data.startswith(magic)), None)
        if ext is None:
            raise ValidationError("照片须为 JPEG 或 PNG / photo must be JPEG or PNG")
        rel = Path("doorplates") / kind / utcnow().strftime("%Y-%m") / f"{secrets.token_hex(12)}{ext}"
        target = self.data_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return rel.as_posix()

    # ---- visitor passes -----------------------------------------------------------------------------------------
    def issue_pass(self, p: Principal, token: str, visitor_name: str, hours: float) -> str:
        """A resident of the household issues a time-limited visitor pass; returns the pass token."""
        _plate, a = self.resolve(token, p)
        visitor_name = (visitor_name or "").strip()
        if not 1 <= len(visitor_name) <= 32:
            raise ValidationError("请填写访客称呼 / visitor name is required")
        if not 0 < hours <= MAX_PASS_HOURS:
            raise ValidationError(f"有效期应在1到{MAX_PASS_HOURS}小时之间 / validity 1..{MAX_PASS_HOURS} hours")
        with self.store.session() as s:
            if p.role is not Role.resident or p.person_id is None or \
                    s.scalar(select(Person.address_id).where(Person.id == p.person_id)) != a.id:
                raise Forbidden("只有本户居民可以邀请访客 / only a resident of this household may invite visitors")
            now = utcnow()
            v = VisitorPass(serial=new_serial(), kid=self.keyring.current, address_id=a.id, issued_by=p.username,
                            visitor_name=visitor_name, valid_from=now, valid_until=now + timedelta(hours=hours))
            s.add(v)
            s.flush()
            out = self.keyring.sign(v.serial, purpose="pass", kid=v.kid)
            pid = v.id
        audit.record(self.store, p, "create", "visitor_pass", [pid], detail=f"address={a.id};hours={hours}")
        return out

    def door_key(self, door_id: str) -> str:
        """The key a door's access control presents (X-Door-Id / X-Door-Key), derived from the current key."""
        return hmac.new(self.keyring.keys[self.keyring.current], f"anfang-door-v1|{door_id}".encode(),
                        hashlib.sha256).hexdigest()

    def door_authentic(self, door_id: str, key: str) -> bool:
        if not door_id or not key:
            return False
        return any(hmac.compare_digest(hmac.new(k, f"anfang-door-v1|{door_id}".encode(), hashlib.sha256).hexdigest(),
                                       key) for k in self.keyring.keys.values())

    def check_pass(self, pass_token: str, door_plate_token: str, door_id: str) -> dict[str, Any]:
        """The door's access control asks whether a pass opens this door (the door is named by its own plate's
        token). Every check is recorded as a visit, granted or not."""
        pass_row = door = None
        reason = "granted"
        now = utcnow()
        with self.store.session() as s:
            try:
                _kid, door_serial = self.keyring.verify(door_plate_token)
                door_row = s.execute(select(DoorPlate, Address).join(Address, DoorPlate.address_id == Address.id)
                                     .where(DoorPlate.serial == door_serial, DoorPlate.revoked_at.is_(None))).first()
                door = door_row[1] if door_row else None
            except TokenRejected:
                door = None
            try:
                _kid, serial = self.keyring.verify(pass_token, purpose="pass")
                pass_row = s.scalar(select(VisitorPass).where(VisitorPass.serial == serial))
            except TokenRejected:
                pass_row = None
            household = s.get(Address, pass_row.address_id) if pass_row else None
            if door is None:
                reason = "unknown_door"
            elif pass_row is None or household is None:
                reason = "invalid_pass"
            elif pass_row.revoked_at is not None:
                reason = "revoked"
            elif now < pass_row.valid_from:
                reason = "not_yet_valid"
            elif now >= pass_row.valid_until:
                reason = "expired"
            elif not household.code.startswith(door.code):
                reason = "wrong_door"  # the pass opens the doors on the way to the household, no others
            granted = reason == "granted"
            s.add(Visit(pass_id=pass_row.id if pass_row else None, door_address_id=door.id if door else None, at=now,
                        granted=granted, reason=reason, door=door_id[:64]))
            out = {"granted": granted, "reason": reason,
                   "valid_until": pass_row.valid_until.isoformat() if pass_row and granted else None}
        if not granted:
            log.info("visitor pass refused at door %s: %s", door_id, reason)
        return out

    def visits(self, p: Principal, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded visits to households in p's scope (staff), or to p's own household (resident)."""
        with self.store.session() as s:
            stmt = (select(Visit, VisitorPass.visitor_name, Address.full_name)
                    .join(VisitorPass, Visit.pass_id == VisitorPass.id)
                    .join(Address, VisitorPass.address_id == Address.id).where(address_condition(p))
                    .order_by(Visit.id.desc()).limit(limit))
            out = [{"at": v.at, "granted": v.granted, "reason": v.reason, "visitor_name": n, "address": addr,
                    "door": v.door} for v, n, addr in s.execute(stmt)]
        audit.record(self.store, p, "read", "visit", [], detail=f"n={len(out)}")
        return out

    # ---- notices ------------------------------------------------------------------------------------------------
    def post_notice(self, p: Principal, address_id: int, category: str, title: str, body: str,
                    days: int = 30) -> int:
        if p.role not in NOTICE_AUTHORS:
            raise Forbidden("当前角色无权发布通知 / role may not post notices")
        if category not in NOTICE_CATEGORIES:
            raise ValidationError(f"通知类别无效：{category}")
        title, body = (title or "").strip(), (body or "").strip()
        if not title or not body or len(title) > 100 or len(body) > 2000:
            raise ValidationError("请填写标题（100字内）和内容（2000字内）/ title and body are required")
        with self.store.session() as s:
            a = self._in_scope(s, p, address_id)
            if a.level not in ("community", "building"):
                raise ValidationError("通知发往小区或楼栋 / notices go to a community or a building")
            n = Notice(address_id=a.id, address_code=a.code, category=category, title=title, body=body,
                       author=p.username, author_role=p.role.value, created_at=utcnow(),
                       expires_at=utcnow() + timedelta(days=max(1, min(days, 365))))
            s.add(n)
            s.flush()
            nid = n.id
        audit.record(self.store, p, "create", "notice", [nid], detail=f"address={address_id}")
        return nid

    @staticmethod
    def _notices(s: Session, code: str) -> list[dict[str, Any]]:
        """Notices of the community and building this address is in (public: no personal data)."""
        prefixes = [code[:n] for n in range(12, len(code) + 1)]
        rows = s.scalars(select(Notice).where(Notice.address_code.in_(prefixes),
                                              (Notice.expires_at.is_(None)) | (Notice.expires_at > utcnow()))
                         .order_by(Notice.id.desc()).limit(10))
        return [{"id": n.id, "category": n.category, "title": n.title, "body": n.body, "created_at": n.created_at,
                 "author_role": n.author_role} for n in rows]

    # ---- tip-offs -----------------------------------------------------------------------------------------------
    def report(self, p: Principal, token: str, *, kind: str, text: str, place: str = "", contact: str = "",
               photo: bytes | None = None) -> str:
        """A tip-off or hazard report from a plate; returns the ticket with which the reporter reads the reply."""
        _plate, a = self.resolve(token, p)
        if kind not in TIPOFF_KINDS:
            raise ValidationError(f"类别无效：{kind}")
        text = (text or "").strip()
        if not 2 <= len(text) <= 2000:
            raise ValidationError("请描述情况（2000字内）/ please describe what you saw")
        contact_v = ids.validate_phone(contact) if contact and contact.strip() else None
        path = self.save_photo("tipoff", photo) if photo else None
        ticket = new_serial()
        with self.store.session() as s:
            t = TipOff(ticket=ticket, address_id=a.id, kind=kind, text=text, place=(place or "").strip()[:200] or None,
                       photo=path, contact=contact_v, client=p.client, created_at=utcnow())
            s.add(t)
            s.flush()
            tid = t.id
        audit.record(self.store, p, "create", "tipoff", [tid], detail=f"address={a.id};kind={kind}")
        return ticket

    def tipoffs(self, p: Principal, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Tip-offs from plates in p's jurisdiction: they reach the grid worker and officer of the address."""
        if p.role not in TIPOFF_HANDLERS:
            raise Forbidden("当前角色无权处理线索 / role may not handle tip-offs")
        with self.store.session() as s:
            stmt = (select(TipOff, Address.full_name).join(Address, TipOff.address_id == Address.id)
                    .where(address_condition(p)).order_by(TipOff.id.desc()).limit(limit))
            if status:
                stmt = stmt.where(TipOff.status == status)
            out = [mask_fields(p.role, {"id": t.id, "kind": t.kind, "text": t.text, "place": t.place,
                                        "photo": t.photo, "phone": t.contact, "status": t.status, "reply": t.reply,
                                        "replied_by": t.replied_by, "created_at": t.created_at, "address": full})
                   for t, full in s.execute(stmt)]
        audit.record(self.store, p, "read", "tipoff", [x["id"] for x in out])
        return out

    def reply(self, p: Principal, tipoff_id: int, text: str) -> None:
        if p.role not in TIPOFF_HANDLERS:
            raise Forbidden("当前角色无权处理线索 / role may not handle tip-offs")
        text = (text or "").strip()
        if not 1 <= len(text) <= 2000:
            raise ValidationError("请填写答复 / reply is required")
        with self.store.session() as s:
            t = s.get(TipOff, tipoff_id)
            if t is None:
                raise NotFound(f"线索不存在：{tipoff_id}")
            self._in_scope(s, p, t.address_id)
            t.reply, t.replied_by, t.replied_at, t.status = text, p.username, utcnow(), "replied"
        audit.record(self.store, p, "update", "tipoff", [tipoff_id], detail="reply")

    def ticket(self, ticket: str) -> dict[str, Any]:
        """What the reporter sees with his ticket: his report's status and the reply (no one else's data)."""
        with self.store.session() as s:
            t = s.scalar(select(TipOff).where(TipOff.ticket == (ticket or "").strip().lower()))
            if t is None:
                raise NotFound("没有该回执号的报告 / no report with this ticket")
            return {"kind": t.kind, "text": t.text, "status": t.status, "reply": t.reply,
                    "created_at": t.created_at, "replied_at": t.replied_at}
