"""Registry operations (一标三实): search, read, create, update, verify — scoped, masked and audited.

Framework-free: the HTTP views, the web console and the CLI all call this class. Every method takes the
Principal asking; scoping is a SQL condition from anfang.security.scope, masking from anfang.security.masking,
and every read or write of personal data is appended to the audit chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anfang.core import ids
from anfang.core.errors import Conflict, Forbidden, NotFound, ValidationError
from anfang.core.regions import PROVINCE_NAME
from anfang.registry.models import Address, House, Person, Region, Residence, Vehicle, WorkUnit
from anfang.registry.schemas import (
    AddressIn,
    HouseIn,
    HousePatch,
    Page,
    PersonIn,
    PersonPatch,
    PlatePatch,
    UnitIn,
    UnitPatch,
    VehicleIn,
)
from anfang.security import audit
from anfang.security.crypto import blind_id_number, blind_phone
from anfang.security.masking import mask_fields, may_see
from anfang.security.roles import VERIFIERS, WRITERS, Role
from anfang.security.scope import Principal, address_condition, person_condition
from anfang.store.base import utcnow
from anfang.store.engine import Store

MAX_PAGE_SIZE = 200
_TOP = "\U0010ffff"  # sorts after every character: [prefix, prefix + _TOP) is the prefix range


def prefix_range(column, prefix: str):  # noqa: ANN001, ANN201 - SQLAlchemy column expression in, condition out
    """A prefix match that is an index range scan on both backends (columns use byte-order collation)."""
    return and_(column >= prefix, column < prefix + _TOP)


def normalize_address_prefix(prefix: str) -> str:
    prefix = prefix.strip()
    if prefix and not prefix.isdigit() and not prefix.startswith(PROVINCE_NAME):
        prefix = PROVINCE_NAME + prefix
    return prefix


def by_address_prefix(stmt: Select, prefix: str | None, tiebreak, default_order) -> Select:  # noqa: ANN001
    """Restrict stmt to addresses under prefix (a full-name prefix, or an address-code prefix when all digits),
    ordered along the address tree; without a prefix, ordered by default_order."""
    if not prefix:
        return stmt.order_by(default_order)
    prefix = normalize_address_prefix(prefix)
    column = Address.code if prefix.isdigit() else Address.full_name
    stmt = stmt.where(prefix_range(column, prefix))
    return stmt.order_by(column, tiebreak) if tiebreak is not None else stmt.order_by(column)


def _page_args(page: int, size: int) -> tuple[int, int]:
    if page < 1:
        raise ValidationError("页码从1开始 / page starts at 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValidationError(f"每页条数应在1到{MAX_PAGE_SIZE}之间 / size must be 1..{MAX_PAGE_SIZE}")
    return page, size


def owners_among(s: Session, p: Principal, person_ids: Sequence[int]) -> set[int]:
    """Those of person_ids who own a house in p's scope: their phone is an owner's phone (security.masking).
    Queried only for a role that treats the two differently (property staff)."""
    if not person_ids or may_see(p.role, "phone") == may_see(p.role, "phone", owner=True):
        return set()
    return set(s.scalars(select(House.owner_person_id).join(Address, House.address_id == Address.id)
                         .where(House.owner_person_id.in_(list(person_ids)), address_condition(p))))


def person_dict(p: Person, address_name: str | None) -> dict[str, Any]:
    return {
        "id": p.id, "id_number": p.id_number, "name": p.name, "gender": p.gender,
        "birth_date": p.birth_date.isoformat() if p.birth_date else None, "phone": p.phone,
        "hukou_address": p.hukou_address, "population_type": p.population_type, "labels": list(p.labels or []),
        "address_id": p.address_id, "address": address_name, "verification": p.verification,
        "verified_by": p.verified_by, "verified_at": p.verified_at.isoformat() if p.verified_at else None,
    }


def address_dict(a: Address) -> dict[str, Any]:
    return {
        "id": a.id, "code": a.code, "parent_id": a.parent_id, "level": a.level, "name": a.name,
        "full_name": a.full_name, "county_code": a.county_code, "town_code": a.town_code,
        "community_code": a.community_code, "police_area_id": a.police_area_id, "grid_id": a.grid_id,
        "lon": a.lon, "lat": a.lat, "plate_installed": a.plate_installed, "plate_accurate": a.plate_accurate,
        "plate_labelled": a.plate_labelled,
    }


def house_dict(h: House, address_name: str | None) -> dict[str, Any]:
    return {
        "id": h.id, "address_id": h.address_id, "address": address_name, "use": h.use,
        "owner_person_id": h.owner_person_id, "owner_name": h.owner_name, "owner_phone": h.owner_phone,
        "area_m2": h.area_m2, "verification": h.verification, "verified_by": h.verified_by,
        "verified_at": h.verified_at.isoformat() if h.verified_at else None,
    }


def unit_dict(u: WorkUnit, address_name: str | None) -> dict[str, Any]:
    return {
        "id": u.id, "credit_code": u.credit_code, "name": u.name, "kind": u.kind, "address_id": u.address_id,
        "address": address_name, "legal_person": u.legal_person, "phone": u.phone, "staff_count": u.staff_count,
        "verification": u.verification, "verified_by": u.verified_by,
        "verified_at": u.verified_at.isoformat() if u.verified_at else None,
    }


def vehicle_dict(v: Vehicle, owner_name: str | None) -> dict[str, Any]:
    return {
        "id": v.id, "plate": v.plate, "plate_color": v.plate_color, "brand": v.brand, "color": v.color,
        "owner_person_id": v.owner_person_id, "owner_name": owner_name, "address_id": v.address_id,
    }


class RegistryService:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- helpers -------------------------------------------------------------------------------------------
    def _audit(self, p: Principal, action: str, entity: str, ids_: Sequence[Any], detail: str = "") -> None:
        audit.record(self.store, p, action, entity, ids_, detail)

    @staticmethod
    def _require(p: Principal, roles: frozenset[Role], what: str) -> None:
        if p.role not in roles:
            raise Forbidden(f"当前角色无权{what} / role {p.role.value} may not {what}")

    @staticmethod
    def _address_in_scope(s: Session, p: Principal, address_id: int) -> Address:
        a = s.scalar(select(Address).where(Address.id == address_id, address_condition(p)))
        if a is None:
            if s.get(Address, address_id) is None:
                raise NotFound(f"地址不存在：{address_id}")
            raise Forbidden("该地址不在您的辖区内 / address outside your jurisdiction")
        return a

    @staticmethod
    def _paged(s: Session, stmt: Select, page: int, size: int) -> tuple[list, bool]:
        rows = list(s.execute(stmt.limit(size + 1).offset((page - 1) * size)))
        return rows[:size], len(rows) > size

    # ---- persons -------------------------------------------------------------------------------------------
    def search_persons(self, p: Principal, *, id_number: str | None = None, name: str | None = None,
                       phone: str | None = None, address_prefix: str | None = None, plate: str | None = None,
                       label: str | None = None, address_id: int | None = None, page: int = 1,
                       size: int = 20) -> Page:
        page, size = _page_args(page, size)
        stmt = (select(Person, Address.full_name).outerjoin(Address, Person.address_id == Address.id)
                .where(person_condition(p)))
        criteria: dict[str, Any] = {}
        if id_number:
            stmt = stmt.where(Person.id_number_hash == blind_id_number(id_number))  # encrypted: keyed hash
            criteria["id_number"] = id_number
        if name:
            stmt = stmt.where(Person.name == name.strip())
            criteria["name"] = name
        if phone:
            stmt = stmt.where(Person.phone_hash == blind_phone(phone))
            criteria["phone"] = phone
        if plate:
            owner_ids = select(Vehicle.owner_person_id).where(Vehicle.plate == plate.strip().upper())
            stmt = stmt.where(Person.id.in_(owner_ids))
            criteria["plate"] = plate
        if label:
            # JSON arrays are stored as text on both backends' JSON type; the quoted key is an exact element match.
            # autoescape: % and _ in the label are literal (LIKE wildcards would match every labelled person)
            stmt = stmt.where(Person.labels.cast(_text_type()).contains(f'"{label}"', autoescape=True))
            criteria["label"] = label
        if address_id is not None:
            stmt = stmt.where(Person.address_id == address_id)
            criteria["address_id"] = address_id
        if address_prefix:
            criteria["address_prefix"] = normalize_address_prefix(address_prefix)
        stmt = by_address_prefix(stmt, address_prefix, Person.id, Person.id)
        with self.store.session() as s:
            rows, more = self._paged(s, stmt, page, size)
            owners = owners_among(s, p, [person.id for person, _ in rows])
            items = [mask_fields(p.role, person_dict(person, addr), owner=person.id in owners)
                     for person, addr in rows]
        self._audit(p, "read", "person", [i["id"] for i in items], detail=_criteria_text(criteria, page))
        return Page(items=items, page=page, size=size, has_more=more)

    def get_person(self, p: Principal, person_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            row = s.execute(select(Person, Address.full_name).outerjoin(Address, Person.address_id == Address.id)
                            .where(Person.id == person_id, person_condition(p))).first()
            if row is None:
                self._audit(p, "read", "person", [person_id], detail="denied_or_missing")
                raise NotFound(f"人员不存在或不在您的辖区内：{person_id}")
            out = person_dict(row[0], row[1])
            out["residences"] = [
                {"house_id": r.house_id, "role": r.role, "since": _iso(r.since), "until": _iso(r.until),
                 "address": addr}
                for r, addr in s.execute(
                    select(Residence, Address.full_name).join(House, Residence.house_id == House.id)
                    .join(Address, House.address_id == Address.id).where(Residence.person_id == person_id))
            ]
            out["vehicles"] = [{"id": v.id, "plate": v.plate, "plate_color": v.plate_color}
                               for v in s.scalars(select(Vehicle).where(Vehicle.owner_person_id == person_id))]
            owner = bool(owners_among(s, p, [person_id]))
        self._audit(p, "read", "person", [person_id])
        return mask_fields(p.role, out, owner=owner)

    def create_person(self, p: Principal, data: PersonIn) -> dict[str, Any]:
        self._require(p, WRITERS, "登记人员")
        info = ids.parse_id_number(data.id_number)
        with self.store.session() as s:
            addr_name = None
            if data.address_id is not None:
                addr_name = self._address_in_scope(s, p, data.address_id).full_name
            elif not p.sees_everything:
                raise ValidationError("请指定现住址 / address_id is required")
            if s.scalar(select(Person.id).where(Person.id_number_hash == blind_id_number(info.number))) is not None:
                raise Conflict(f"该身份证号已登记：{info.number[:6]}********{info.number[-4:]}")
            person = Person(id_number=info.number, name=data.name, gender=info.gender, birth_date=info.birth_date,
                            phone=data.phone, hukou_address=data.hukou_address,
                            population_type=data.population_type, labels=data.labels, address_id=data.address_id)
            s.add(person)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict("该身份证号已登记 / identity number already registered") from None
            out = person_dict(person, addr_name)
        self._audit(p, "create", "person", [out["id"]])
        return mask_fields(p.role, out)

    def update_person(self, p: Principal, person_id: int, patch: PersonPatch) -> dict[str, Any]:
        self._require(p, WRITERS, "修改人员")
        changes = patch.model_dump(exclude_unset=True)
        with self.store.session() as s:
            person = s.scalar(select(Person).outerjoin(Address, Person.address_id == Address.id)
                              .where(Person.id == person_id, person_condition(p)))
            if person is None:
                raise NotFound(f"人员不存在或不在您的辖区内：{person_id}")
            addr_name = None
            if changes.get("address_id") is not None:
                addr_name = self._address_in_scope(s, p, changes["address_id"]).full_name
            for k, v in changes.items():
                setattr(person, k, v)
            s.flush()
            if addr_name is None and person.address_id is not None:
                addr_name = s.scalar(select(Address.full_name).where(Address.id == person.address_id))
            out = person_dict(person, addr_name)
        self._audit(p, "update", "person", [person_id], detail=",".join(sorted(changes)))
        return mask_fields(p.role, out)

    def delete_person(self, p: Principal, person_id: int) -> None:
        self._require(p, frozenset({Role.city_admin, Role.county_admin, Role.police}), "删除人员")
        with self.store.session() as s:
            person = s.scalar(select(Person).outerjoin(Address, Person.address_id == Address.id)
                              .where(Person.id == person_id, person_condition(p)))
            if person is None:
                raise NotFound(f"人员不存在或不在您的辖区内：{person_id}")
            s.execute(Residence.__table__.delete().where(Residence.person_id == person_id))
            s.execute(Vehicle.__table__.update().where(Vehicle.owner_person_id == person_id)
                      .values(owner_person_id=None))
            s.execute(House.__table__.update().where(House.owner_person_id == person_id)
                      .values(owner_person_id=None))
            s.delete(person)
        self._audit(p, "delete", "person", [person_id])

    # ---- verification (三实 核实) -----------------------------------------------------------------------------
    _VERIFIABLE = {"person": Person, "house": House, "unit": WorkUnit}

    def set_verification(self, p: Principal, entity: str, record_id: int, state: str) -> dict[str, Any]:
        self._require(p, VERIFIERS, "核实信息")
        model = self._VERIFIABLE.get(entity)
        if model is None:
            raise ValidationError(f"不可核实的对象类型：{entity}")
        with self.store.session() as s:
            obj = s.get(model, record_id)
            if obj is None or obj.address_id is None:
                raise NotFound(f"记录不存在：{entity} {record_id}")
            self._address_in_scope(s, p, obj.address_id)
            obj.verification = state
            obj.verified_by = p.username if state != "unverified" else None
            obj.verified_at = utcnow() if state != "unverified" else None
            out = {"entity": entity, "id": record_id, "verification": state, "verified_by": obj.verified_by,
                   "verified_at": obj.verified_at.isoformat() if obj.verified_at else None}
        self._audit(p, "update", entity, [record_id], detail=f"verification={state}")
        return out

    # ---- addresses -----------------------------------------------------------------------------------------
    def search_addresses(self, p: Principal, *, prefix: str | None = None, level: str | None = None,
                         page: int = 1, size: int = 20) -> Page:
        page, size = _page_args(page, size)
        stmt = select(Address).where(address_condition(p))
        stmt = by_address_prefix(stmt, prefix, None, Address.full_name)
        if level:
            stmt = stmt.where(Address.level == level)
        with self.store.session() as s:
            rows, more = self._paged(s, stmt, page, size)
            items = [address_dict(r[0]) for r in rows]
        return Page(items=items, page=page, size=size, has_more=more)

    def get_address(self, p: Principal, address_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            a = self._address_in_scope(s, p, address_id)
            out = address_dict(a)
            out["children"] = [address_dict(c) for c in s.scalars(
                select(Address).where(Address.parent_id == a.id, address_condition(p)).order_by(Address.code))]
            out["ancestors"] = self._ancestors(s, a)
            house = s.scalar(select(House).where(House.address_id == a.id))
            out["house"] = mask_fields(p.role, house_dict(house, a.full_name)) if house else None
            here = list(s.scalars(select(Person).join(Address, Person.address_id == Address.id)
                                  .where(Person.address_id == a.id, person_condition(p)).order_by(Person.id)))
            owners = owners_among(s, p, [x.id for x in here])
            out["persons"] = [mask_fields(p.role, person_dict(x, a.full_name), owner=x.id in owners) for x in here]
            out["units"] = [unit_dict(u, a.full_name) for u in s.scalars(
                select(WorkUnit).where(WorkUnit.address_id == a.id).order_by(WorkUnit.id))]
        if out["persons"] or out["house"]:
            self._audit(p, "read", "address", [address_id],
                        detail=f"persons={','.join(str(x['id']) for x in out['persons'])}")
        return out

    @staticmethod
    def _ancestors(s: Session, a: Address) -> list[dict[str, Any]]:
        chain: list[dict[str, Any]] = []
        parent_id = a.parent_id
        while parent_id is not None:
            parent = s.get(Address, parent_id)
            if parent is None:
                break
            chain.append({"id": parent.id, "name": parent.name, "level": parent.level})
            parent_id = parent.parent_id
        return list(reversed(chain))

    def address_roots(self, p: Principal, community_code: str | None = None) -> list[dict[str, Any]]:
        """Community-level address nodes (小区 / 村) in scope, optionally of one community."""
        stmt = select(Address).where(Address.level == "community", address_condition(p))
        if community_code:
            stmt = stmt.where(Address.community_code == community_code)
        with self.store.session() as s:
            return [address_dict(a) for a in s.scalars(stmt.order_by(Address.code).limit(2000))]

    def create_address(self, p: Principal, data: AddressIn) -> dict[str, Any]:
        self._require(p, WRITERS, "新增地址")
        with self.store.session() as s:
            parent = self._address_in_scope(s, p, data.parent_id)
            level = _CHILD_LEVEL.get(parent.level)
            if level is None:
                raise ValidationError(f"{parent.level}级地址下不能再新增下级地址")
            siblings = s.scalars(select(Address.code).where(Address.parent_id == parent.id)).all()
            code = data.code or _next_child_code(parent.code, level, siblings)
            if not code.startswith(parent.code):
                raise ValidationError(f"地址编码必须以上级编码{parent.code}开头")
            a = Address(code=code, parent_id=parent.id, level=level, name=data.name,
                        full_name=parent.full_name + data.name, county_code=parent.county_code,
                        town_code=parent.town_code, community_code=parent.community_code,
                        police_area_id=parent.police_area_id, grid_id=parent.grid_id,
                        lon=data.lon if data.lon is not None else parent.lon,
                        lat=data.lat if data.lat is not None else parent.lat)
            s.add(a)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"地址编码已存在：{code}") from None
            out = address_dict(a)
        self._audit(p, "create", "address", [out["id"]])
        return out

    def set_plate_state(self, p: Principal, address_id: int, patch: PlatePatch) -> dict[str, Any]:
        self._require(p, WRITERS | {Role.property_staff}, "更新门牌状态")
        with self.store.session() as s:
            a = self._address_in_scope(s, p, address_id)
            for k, v in patch.model_dump(exclude_none=True).items():
                setattr(a, k, v)
            s.flush()
            out = address_dict(a)
        self._audit(p, "update", "address", [address_id], detail="plate")
        return out

    # ---- houses --------------------------------------------------------------------------------------------
    def search_houses(self, p: Principal, *, address_prefix: str | None = None, use: str | None = None,
                      verification: str | None = None, page: int = 1, size: int = 20) -> Page:
        page, size = _page_args(page, size)
        stmt = select(House, Address.full_name).join(Address, House.address_id == Address.id).where(
            address_condition(p))
        stmt = by_address_prefix(stmt, address_prefix, None, House.id)
        if use:
            stmt = stmt.where(House.use == use)
        if verification:
            stmt = stmt.where(House.verification == verification)
        with self.store.session() as s:
            rows, more = self._paged(s, stmt, page, size)
            items = [mask_fields(p.role, house_dict(h, a)) for h, a in rows]
        self._audit(p, "read", "house", [i["id"] for i in items])
        return Page(items=items, page=page, size=size, has_more=more)

    def get_house(self, p: Principal, house_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            row = s.execute(select(House, Address.full_name).join(Address, House.address_id == Address.id)
                            .where(House.id == house_id, address_condition(p))).first()
            if row is None:
                raise NotFound(f"房屋不存在或不在您的辖区内：{house_id}")
            out = house_dict(row[0], row[1])
            rows = list(s.execute(select(Residence, Person).join(Person, Residence.person_id == Person.id)
                                  .where(Residence.house_id == house_id).order_by(Residence.id)))
            owners = owners_among(s, p, [per.id for _, per in rows])
            out["residents"] = [
                mask_fields(p.role, {"person_id": per.id, "name": per.name, "id_number": per.id_number,
                                     "phone": per.phone, "role": r.role, "since": _iso(r.since),
                                     "until": _iso(r.until)}, owner=per.id in owners)
                for r, per in rows
            ]
        self._audit(p, "read", "house", [house_id])
        return mask_fields(p.role, out)

    def create_house(self, p: Principal, data: HouseIn) -> dict[str, Any]:
        self._require(p, WRITERS, "登记房屋")
        with self.store.session() as s:
            a = self._address_in_scope(s, p, data.address_id)
            if s.scalar(select(House.id).where(House.address_id == a.id)) is not None:
                raise Conflict(f"该地址已登记房屋：{a.full_name}")
            h = House(**data.model_dump())
            s.add(h)
            s.flush()
            out = house_dict(h, a.full_name)
        self._audit(p, "create", "house", [out["id"]])
        return mask_fields(p.role, out)

    def update_house(self, p: Principal, house_id: int, patch: HousePatch) -> dict[str, Any]:
        self._require(p, WRITERS, "修改房屋")
        with self.store.session() as s:
            h = s.get(House, house_id)
            if h is None:
                raise NotFound(f"房屋不存在：{house_id}")
            a = self._address_in_scope(s, p, h.address_id)
            for k, v in patch.model_dump(exclude_unset=True).items():
                setattr(h, k, v)
            s.flush()
            out = house_dict(h, a.full_name)
        self._audit(p, "update", "house", [house_id])
        return mask_fields(p.role, out)

    def add_residence(self, p: Principal, house_id: int, person_id: int, role: str,
                      since: date | None = None) -> dict[str, Any]:
        self._require(p, WRITERS, "登记居住关系")
        if role not in ("owner", "family", "tenant"):
            raise ValidationError(f"居住关系无效：{role}")
        with self.store.session() as s:
            h = s.get(House, house_id)
            if h is None:
                raise NotFound(f"房屋不存在：{house_id}")
            self._address_in_scope(s, p, h.address_id)
            person = s.get(Person, person_id)
            if person is None:
                raise NotFound(f"人员不存在：{person_id}")
            r = Residence(person_id=person_id, house_id=house_id, role=role, since=since or date.today())
            s.add(r)
            person.address_id = h.address_id
            s.flush()
            out = {"id": r.id, "house_id": house_id, "person_id": person_id, "role": role, "since": _iso(r.since)}
        self._audit(p, "create", "residence", [person_id], detail=f"house={house_id}")
        return out

    # ---- work units ----------------------------------------------------------------------------------------
    def search_units(self, p: Principal, *, name: str | None = None, credit_code: str | None = None,
                     address_prefix: str | None = None, page: int = 1, size: int = 20) -> Page:
        page, size = _page_args(page, size)
        stmt = select(WorkUnit, Address.full_name).join(Address, WorkUnit.address_id == Address.id).where(
            address_condition(p))
        if name:
            stmt = stmt.where(WorkUnit.name.contains(name.strip(), autoescape=True))
        if credit_code:
            stmt = stmt.where(WorkUnit.credit_code == credit_code.strip().upper())
        stmt = by_address_prefix(stmt, address_prefix, None, WorkUnit.id)
        with self.store.session() as s:
            rows, more = self._paged(s, stmt, page, size)
            items = [mask_fields(p.role, unit_dict(u, a)) for u, a in rows]
        self._audit(p, "read", "unit", [i["id"] for i in items])
        return Page(items=items, page=page, size=size, has_more=more)

    def get_unit(self, p: Principal, unit_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            row = s.execute(select(WorkUnit, Address.full_name).join(Address, WorkUnit.address_id == Address.id)
                            .where(WorkUnit.id == unit_id, address_condition(p))).first()
            if row is None:
                raise NotFound(f"单位不存在或不在您的辖区内：{unit_id}")
            out = unit_dict(row[0], row[1])
        self._audit(p, "read", "unit", [unit_id])
        return mask_fields(p.role, out)

    def create_unit(self, p: Principal, data: UnitIn) -> dict[str, Any]:
        self._require(p, WRITERS, "登记单位")
        with self.store.session() as s:
            a = self._address_in_scope(s, p, data.address_id)
            if s.scalar(select(WorkUnit.id).where(WorkUnit.credit_code == data.credit_code)) is not None:
                raise Conflict(f"统一社会信用代码已登记：{data.credit_code}")
            u = WorkUnit(**data.model_dump())
            s.add(u)
            s.flush()
            out = unit_dict(u, a.full_name)
        self._audit(p, "create", "unit", [out["id"]])
        return out

    def update_unit(self, p: Principal, unit_id: int, patch: UnitPatch) -> dict[str, Any]:
        self._require(p, WRITERS, "修改单位")
        changes = patch.model_dump(exclude_unset=True)
        with self.store.session() as s:
            u = s.get(WorkUnit, unit_id)
            if u is None:
                raise NotFound(f"单位不存在：{unit_id}")
            self._address_in_scope(s, p, u.address_id)
            if changes.get("address_id") is not None:
                self._address_in_scope(s, p, changes["address_id"])
            for k, v in changes.items():
                setattr(u, k, v)
            s.flush()
            name = s.scalar(select(Address.full_name).where(Address.id == u.address_id))
            out = unit_dict(u, name)
        self._audit(p, "update", "unit", [unit_id])
        return out

    # ---- vehicles ------------------------------------------------------------------------------------------
    def search_vehicles(self, p: Principal, *, plate: str | None = None, owner_person_id: int | None = None,
                        page: int = 1, size: int = 20) -> Page:
        page, size = _page_args(page, size)
        stmt = (select(Vehicle, Person.name).outerjoin(Person, Vehicle.owner_person_id == Person.id)
                .outerjoin(Address, Vehicle.address_id == Address.id).where(address_condition(p)))
        if plate:
            plate = plate.strip().upper()
            stmt = stmt.where(Vehicle.plate == plate) if len(plate) >= 7 else stmt.where(
                prefix_range(Vehicle.plate, plate))
        if owner_person_id is not None:
            stmt = stmt.where(Vehicle.owner_person_id == owner_person_id)
        with self.store.session() as s:
            rows, more = self._paged(s, stmt.order_by(Vehicle.plate), page, size)
            items = [vehicle_dict(v, n) for v, n in rows]
        self._audit(p, "read", "vehicle", [i["id"] for i in items])
        return Page(items=items, page=page, size=size, has_more=more)

    def create_vehicle(self, p: Principal, data: VehicleIn) -> dict[str, Any]:
        self._require(p, WRITERS, "登记车辆")
        with self.store.session() as s:
            address_id = None
            owner_name = None
            if data.owner_person_id is not None:
                owner = s.scalar(select(Person).outerjoin(Address, Person.address_id == Address.id)
                                 .where(Person.id == data.owner_person_id, person_condition(p)))
                if owner is None:
                    raise NotFound(f"车主不存在或不在您的辖区内：{data.owner_person_id}")
                address_id, owner_name = owner.address_id, owner.name
            elif not p.sees_everything:
                raise ValidationError("请指定车主 / owner_person_id is required")
            if s.scalar(select(Vehicle.id).where(Vehicle.plate == data.plate)) is not None:
                raise Conflict(f"车牌已登记：{data.plate}")
            v = Vehicle(**data.model_dump(), address_id=address_id)
            s.add(v)
            s.flush()
            out = vehicle_dict(v, owner_name)
        self._audit(p, "create", "vehicle", [out["id"]])
        return out

    # ---- regions -------------------------------------------------------------------------------------------
    def regions(self, p: Principal, parent_code: str | None = None) -> list[dict[str, Any]]:
        """Child regions of parent_code (None: the top the principal may see) within the principal's scope."""
        with self.store.session() as s:
            if parent_code is None:
                stmt = select(Region).where(Region.level == "city")
            else:
                stmt = select(Region).where(Region.parent_code == parent_code)
            regions = list(s.scalars(stmt.order_by(Region.code)))
            if p.sees_everything:
                visible: set[str] = set()
            elif p.role is Role.county_admin:
                # the county's own code stands for its communities: reading the distinct communities of its
                # ~100,000 addresses on every view cost seconds at city scale
                visible = {p.county_code} if p.county_code else set()
            else:
                visible = set(s.scalars(select(Address.community_code).where(address_condition(p)).distinct()))
        out = []
        for r in regions:
            prefix = _code_prefix(r)
            if p.sees_everything or any(c.startswith(prefix) or prefix.startswith(c) for c in visible):
                out.append({"code": r.code, "name": r.name, "full_name": r.full_name, "level": r.level,
                            "kind": r.kind, "parent_code": r.parent_code})
        return out


_CHILD_LEVEL = {"community": "building", "building": "unit", "unit": "floor", "floor": "room"}
_CODE_WIDTH = {"building": 4, "unit": 2, "floor": 3, "room": 2}


def _next_child_code(parent_code: str, level: str, siblings: Sequence[str]) -> str:
    width = _CODE_WIDTH[level]
    used = {int(c[len(parent_code):]) for c in siblings if c[len(parent_code):].isdigit()}
    n = max(used, default=0) + 1
    return f"{parent_code}{n:0{width}d}"


def _code_prefix(r: Region) -> str:
    if r.level in ("city", "county"):
        return r.code[:4] if r.level == "city" else r.code[:6]
    if r.level == "town":
        return r.code[:9]
    return r.code


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _criteria_text(criteria: dict[str, Any], page: int) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(criteria.items())) + f";page={page}"


def _text_type():  # noqa: ANN202
    from sqlalchemy import Text

    return Text()
