"""Warning lifecycle (signal → case, as Netflix Dispatch does it): dedup, routing to the responsible officer,
new → dispatched → acknowledged → handled → closed, escalation, plate watchlists. No HTTP, no bus here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true

from anfang.core import timefmt
from anfang.core.errors import Conflict, Forbidden, NotFound, ValidationError
from anfang.core.events import Event, new_event_id
from anfang.registry.models import Address, PoliceArea
from anfang.rollups.models import WarningRollup
from anfang.security import audit
from anfang.security.models import User
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.warnings.models import PlateEntry, PlateWatchlist, Warning, WarningStep
from anfang.warnings.plates import PlateIndex, normalize_plate

OPEN_STATES = ("new", "dispatched", "acknowledged")
FEEDBACK = ("true", "false_alarm", "resolved")
STATE_LABELS = {"new": ("新预警", "new"), "dispatched": ("已推送", "dispatched"),
                "acknowledged": ("已签收", "acknowledged"), "handled": ("已处置", "handled"),
                "closed": ("已关闭", "closed")}
HANDLERS = frozenset({Role.police, Role.grid_worker, Role.property_staff, Role.county_admin, Role.city_admin})
WATCHLIST_ADMINS = frozenset({Role.police, Role.county_admin, Role.city_admin})


@dataclass
class Candidate:
    """What a rule found; the service turns it into a warning (or folds it into an open one)."""

    rule: str
    category: str
    title: str
    source: str
    dedup_key: str
    severity: int = 2
    event: Event | None = None
    data: dict[str, Any] = field(default_factory=dict)
    notify_roles: frozenset[str] = frozenset({"police"})
    at: datetime | None = None
    address_id: int | None = None
    community_code: str | None = None


def warning_condition(p: Principal) -> ColumnElement[bool]:
    """The warnings p may see: his 警务区 (and his station's escalated ones), his grid or community where the
    warning type notifies that role, his county; the city admin sees all."""
    match p.role:
        case Role.city_admin:
            return true()
        case Role.county_admin:
            return Warning.county_code == p.county_code if p.county_code else false()
        case Role.police:
            if not p.police_area_id:
                return false()
            station = select(PoliceArea.station_id).where(PoliceArea.id == p.police_area_id).scalar_subquery()
            return or_(Warning.police_area_id == p.police_area_id,
                       (Warning.escalated_at.is_not(None)) & (Warning.station_id == station))
        case Role.grid_worker:
            if not p.grid_id:
                return false()
            return (Warning.grid_id == p.grid_id) & Warning.notify_roles.contains("grid_worker")
        case Role.property_staff:
            if not p.community_code:
                return false()
            return (Warning.community_code == p.community_code) & Warning.notify_roles.contains("property_staff")
    return false()


def visible_to(p: Principal, w: dict[str, Any], station_of_area: int | None = None) -> bool:
    """The same rule as warning_condition, on a warning view (for push fan-out without a query)."""
    roles = set(w.get("notify_roles") or [])
    match p.role:
        case Role.city_admin:
            return True
        case Role.county_admin:
            return bool(p.county_code) and w.get("county_code") == p.county_code
        case Role.police:
            if not p.police_area_id:
                return False
            return w.get("police_area_id") == p.police_area_id or (
                bool(w.get("escalated_at")) and station_of_area is not None and w.get("station_id") == station_of_area)
        case Role.grid_worker:
            return bool(p.grid_id) and w.get("grid_id") == p.grid_id and "grid_worker" in roles
        case Role.property_staff:
            return bool(p.community_code) and w.get("community_code") == p.community_code and "property_staff" in roles
    return False


MAX_HITS = 50  # repeat sightings kept on a warning (the newest)


def _sighting(data: dict[str, Any]) -> bool:
    """A candidate with a photo (face / plate capture): its repeats update the warning."""
    return bool(data.get("image") or data.get("capture_image"))


def _hit(c: Candidate, at: datetime) -> dict[str, Any]:
    d = c.data
    return {"at": at.astimezone(UTC).isoformat(),
            "shot_at": c.event.at.astimezone(UTC).isoformat() if c.event is not None else None,
            "image": d.get("image") or d.get("capture_image"), "distance": d.get("distance"),
            "similarity": d.get("similarity")}


def _public_data(w: Warning) -> dict[str, Any]:
    """The warning's data for the API: photo links, never a server path."""
    data = dict(w.data or {})
    if data.pop("photo_path", None) is not None or data.get("entry_id") is not None:
        data["enrolled_photo"] = f"/api/warnings/{w.id}/enrolled-photo"
    return data


def view(w: Warning, lang: str = "zh-CN") -> dict[str, Any]:
    zh, en = STATE_LABELS.get(w.state, (w.state, w.state))
    return {"id": w.id, "uid": w.uid, "rule": w.rule, "category": w.category, "title": w.title,
            "severity": w.severity, "state": w.state, "state_label": zh if lang.startswith("zh") else en,
            "source": w.source, "event_id": w.event_id, "hits": w.hits, "county_code": w.county_code,
            "community_code": w.community_code, "address_id": w.address_id, "police_area_id": w.police_area_id,
            "station_id": w.station_id, "grid_id": w.grid_id, "place": w.place, "longitude": w.longitude,
            "latitude": w.latitude, "notify_roles": [r for r in (w.notify_roles or "").split(",") if r],
            "data": _public_data(w), "created_at": w.created_at.isoformat(), "last_hit_at": w.last_hit_at.isoformat(),
            "acknowledged_at": w.acknowledged_at.isoformat() if w.acknowledged_at else None,
            "handled_at": w.handled_at.isoformat() if w.handled_at else None,
            "escalated_at": w.escalated_at.isoformat() if w.escalated_at else None,
            "recovered_at": w.recovered_at.isoformat() if w.recovered_at else None, "feedback": w.feedback,
            "created_at_text": timefmt.fmt(w.created_at, lang),  # shown as is by the console and the terminal
            "shot_at_text": timefmt.fmt((w.data or {}).get("shot_at"), lang, empty=""),  # the device's own clock
            "hit_times_text": hit_times(w.data, lang)}


def hit_times(data: dict[str, Any] | None, lang: str) -> list[str]:
    """The receive times of a warning's sightings (``data.hit_list``), as every page shows times (core.timefmt)."""
    return [timefmt.fmt(h.get("at"), lang, empty="") for h in (data or {}).get("hit_list") or []
            if isinstance(h, dict)]


class WarningService:
    def __init__(self, store: Store, *, dedup_minutes: float = 10, escalate_minutes: float = 15) -> None:
        self.store = store
        self.dedup = timedelta(minutes=dedup_minutes)
        self.escalate_after = timedelta(minutes=escalate_minutes)
        self._plate_index: dict[int, tuple[PlateWatchlist, PlateIndex]] | None = None
        # called as hook(session, warning view, step) inside the transaction that raises or escalates a warning
        # (the webhook delivery outbox): what they write commits with the warning or not at all
        self.hooks: list[Callable[[Any, dict[str, Any], str], None]] = []

    def _emit(self, s: Any, v: dict[str, Any], step: str) -> None:
        for hook in self.hooks:
            hook(s, v, step)

    # ---- raising -------------------------------------------------------------------------------------------
    def _locate(self, s: Any, c: Candidate) -> dict[str, Any]:
        """Where the warning belongs: the address's 警务区 / grid / community, else the community's 警务区."""
        e = c.event
        address_id = c.address_id or (e.address_id if e else None)
        community = c.community_code or (e.community_code if e else None)
        out: dict[str, Any] = {"address_id": address_id, "community_code": community,
                               "longitude": e.longitude if e else None, "latitude": e.latitude if e else None}
        if address_id is not None:
            addr = s.get(Address, address_id)
            if addr is not None:
                out.update(community_code=addr.community_code, police_area_id=addr.police_area_id,
                           grid_id=addr.grid_id, place=addr.full_name, county_code=addr.county_code)
                out["longitude"] = out["longitude"] if out["longitude"] is not None else addr.lon
                out["latitude"] = out["latitude"] if out["latitude"] is not None else addr.lat
        if address_id is None and out.get("police_area_id") is None:
            self._device_place(s, c, out)
        if out.get("police_area_id") is None and out.get("community_code"):
            # The 警务区 that covers most of the community's addresses.
            row = s.execute(select(Address.police_area_id, func.count()).where(
                Address.community_code == out["community_code"], Address.police_area_id.is_not(None))
                .group_by(Address.police_area_id).order_by(func.count().desc()).limit(1)).first()
            if row is not None:
                out["police_area_id"] = row[0]
            top = s.execute(select(Address.full_name, Address.grid_id).where(
                Address.community_code == out["community_code"], Address.level == "community")).first()
            if top is not None:
                out.setdefault("place", top[0])
                out.setdefault("grid_id", top[1])
        if out.get("community_code"):
            out.setdefault("county_code", out["community_code"][:6])
        if out.get("police_area_id") is not None:
            out["station_id"] = s.scalar(select(PoliceArea.station_id).where(PoliceArea.id == out["police_area_id"]))
        return out

    @staticmethod
    def _device_place(s: Any, c: Candidate, out: dict[str, Any]) -> None:
        """The placement of the device that saw it (devices/placement.py); a device nobody has placed yet belongs
        to the county its id names: the warning goes to that county's duty desk, marked, never to nobody."""
        from anfang.devices.models import Device
        from anfang.devices.placement import PLACED, county_of
        from anfang.registry.models import Region

        source = c.source or (c.event.source if c.event else "")
        dev = s.execute(select(Device.device_id, Device.community_code, Device.police_area_id, Device.grid_id,
                               Device.placement).where(Device.device_id == source)
                        .order_by(Device.placement.desc()).limit(1)).first()
        if dev is None:
            return
        if dev.community_code:
            out["community_code"] = out.get("community_code") or dev.community_code
            if out["community_code"] == dev.community_code:
                out["police_area_id"], out["grid_id"] = dev.police_area_id, dev.grid_id
            if dev.placement != PLACED:
                out["unplaced_device"] = dev.placement
            return
        if out.get("community_code"):
            return
        county = county_of(dev.device_id, None)
        if county and s.scalar(select(Region.code).where(Region.code == county, Region.level == "county")):
            out["county_code"] = county
        out["unplaced_device"] = "unplaced"

    def raise_warning(self, c: Candidate) -> dict[str, Any] | None:
        """A new warning (returned as a view, to be pushed), or None when folded into an open duplicate."""
        out = self.raise_or_update(c)
        return out[1] if out is not None and out[0] == "raised" else None

    def raise_or_update(self, c: Candidate) -> tuple[str, dict[str, Any]] | None:
        """("raised", view) for a new warning; ("updated", view) when the candidate is a repeat folded into an open
        warning that it changed (a new photo: latest photo, best distance, hit list — pushed to the terminal);
        None for a plain repeat (a sensor still in alarm)."""
        # Lifecycle timers (dedup window, escalation, SLA) run on the platform's receive time: a camera whose clock
        # is hours off must not have its warning escalated seconds after it arrived. The device's own time of the
        # event (the shot time) is kept in ``data["shot_at"]`` and shown.
        at = c.at or utcnow()
        with self.store.session() as s:
            if c.event is not None and s.scalar(select(Warning.id).where(Warning.event_id == c.event.id,
                                                                         Warning.dedup_key == c.dedup_key[:160])
                                                .limit(1)) is not None:
                return None  # a replayed event (durable bus consumer): never a second warning
            open_one = s.scalar(select(Warning).where(Warning.dedup_key == c.dedup_key,
                                                      Warning.state.in_(OPEN_STATES))
                                .order_by(Warning.id.desc()).limit(1))
            if open_one is not None and at - open_one.last_hit_at <= self.dedup:
                open_one.hits += 1
                open_one.last_hit_at = max(at, open_one.last_hit_at)
                if not _sighting(c.data):
                    return None
                data = dict(open_one.data or {})
                hit = _hit(c, at)
                data["hit_list"] = [*(data.get("hit_list") or []), hit][-MAX_HITS:]
                for key in ("image", "capture_image", "scene_image", "plate_image", "face_box", "shot_at"):
                    if hit.get(key) is not None or c.data.get(key) is not None:
                        data[key] = c.data.get(key, hit.get(key))
                if c.data.get("distance") is not None:
                    best = data.get("distance")
                    if best is None or float(c.data["distance"]) < float(best):
                        data["distance"], data["similarity"] = c.data["distance"], c.data.get("similarity")
                        data["best_image"] = c.data.get("image") or c.data.get("capture_image")
                open_one.data = data
                s.add(WarningStep(warning_id=open_one.id, at=at, actor="system", action="repeated",
                                  note=f"hits={open_one.hits}"))
                s.flush()
                return "updated", view(open_one)
            loc = self._locate(s, c)
            title = c.title
            data = dict(c.data)
            if c.event is not None:
                data.setdefault("shot_at", c.event.at.astimezone(UTC).isoformat())
            if _sighting(c.data):
                data["hit_list"] = [_hit(c, at)]
                data.setdefault("best_image", data.get("image") or data.get("capture_image"))
            unplaced = loc.pop("unplaced_device", None)
            if unplaced:  # shown on the warning; the county duty desk receives it (recipients)
                data["unplaced_device"] = True
                data["placement"] = unplaced
            if unplaced == "unplaced":
                title = f"【设备未安置】{c.title}"
            w = Warning(uid=new_event_id(), rule=c.rule, category=c.category, title=title[:200],
                        severity=c.severity, state="dispatched", source=c.source,
                        event_id=c.event.id if c.event else None, dedup_key=c.dedup_key[:160], hits=1,
                        notify_roles=",".join(sorted(c.notify_roles | {"police"})), data=data, created_at=at,
                        last_hit_at=at, **loc)
            s.add(w)
            s.flush()
            s.add(WarningStep(warning_id=w.id, at=at, actor="system", action="raised", note=c.rule))
            s.add(WarningStep(warning_id=w.id, at=at, actor="system", action="dispatched",
                              note=f"police_area={w.police_area_id}"))
            v = view(w)
            self._emit(s, v, "raised")
            return "raised", v

    def recover(self, dedup_key: str, at: datetime | None = None, note: str = "") -> dict[str, Any] | None:
        """The condition behind an open warning is back to normal (sensor recovery)."""
        with self.store.session() as s:
            w = s.scalar(select(Warning).where(Warning.dedup_key == dedup_key, Warning.state.in_(OPEN_STATES))
                         .order_by(Warning.id.desc()).limit(1))
            if w is None or (w.recovered_at is not None and at is not None and w.recovered_at >= at):
                return None  # already recovered by this (replayed) reading or a later one
            w.recovered_at = at or utcnow()
            s.add(WarningStep(warning_id=w.id, at=w.recovered_at, actor="system", action="recovered", note=note))
            return view(w)

    def escalate_overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Dispatched warnings not acknowledged in time go to the whole police station."""
        now = now or utcnow()
        with self.store.session() as s:
            due = list(s.scalars(select(Warning).where(Warning.state == "dispatched", Warning.escalated_at.is_(None),
                                                       Warning.created_at <= now - self.escalate_after)))
            for w in due:
                w.escalated_at = now
                s.add(WarningStep(warning_id=w.id, at=now, actor="system", action="escalated",
                                  note=f"station={w.station_id}"))
            views = [view(w) for w in due]
            for v in views:
                self._emit(s, v, "escalated")
            return views

    # ---- lifecycle by people -------------------------------------------------------------------------------
    def _own(self, s: Any, p: Principal, warning_id: int) -> Warning:
        w = s.scalar(select(Warning).where(Warning.id == warning_id, warning_condition(p)))
        if w is None:
            raise NotFound(f"预警不存在或不在您的辖区内：{warning_id}")
        return w

    def acknowledge(self, p: Principal, warning_id: int) -> dict[str, Any]:
        if p.role not in HANDLERS:
            raise Forbidden("当前角色无权签收预警 / role may not acknowledge warnings")
        with self.store.session() as s:
            w = self._own(s, p, warning_id)
            if w.state in ("new", "dispatched"):
                w.state, w.acknowledged_at = "acknowledged", utcnow()
                s.add(WarningStep(warning_id=w.id, actor=p.username, action="acknowledged"))
            out = view(w)
        audit.record(self.store, p, "update", "warning", [warning_id], "acknowledge")
        return out

    def handle(self, p: Principal, warning_id: int, feedback: str, note: str = "") -> dict[str, Any]:
        if p.role not in HANDLERS:
            raise Forbidden("当前角色无权处置预警 / role may not handle warnings")
        if feedback not in FEEDBACK:
            raise ValidationError(f"处置结果须为 {', '.join(FEEDBACK)} / feedback must be one of {FEEDBACK}")
        with self.store.session() as s:
            w = self._own(s, p, warning_id)
            if w.state in ("handled", "closed"):
                raise Conflict(f"预警已处置 / warning already {w.state}")
            now = utcnow()
            if w.acknowledged_at is None:
                w.acknowledged_at = now
                s.add(WarningStep(warning_id=w.id, at=now, actor=p.username, action="acknowledged"))
            w.state, w.handled_at, w.feedback = "handled", now, feedback
            s.add(WarningStep(warning_id=w.id, at=now, actor=p.username, action="handled",
                              note=f"{feedback}: {note}"[:2000]))
            out = view(w)
        audit.record(self.store, p, "update", "warning", [warning_id], f"handle {feedback}")
        return out

    def close(self, p: Principal, warning_id: int, note: str = "") -> dict[str, Any]:
        if p.role not in (Role.police, Role.county_admin, Role.city_admin):
            raise Forbidden("只有民警或管理员可关闭预警 / only officers and admins close warnings")
        with self.store.session() as s:
            w = self._own(s, p, warning_id)
            if w.state != "handled":
                raise Conflict("预警须先处置再关闭 / handle the warning before closing it")
            w.state = "closed"
            s.add(WarningStep(warning_id=w.id, actor=p.username, action="closed", note=note[:2000]))
            out = view(w)
        audit.record(self.store, p, "update", "warning", [warning_id], "close")
        return out

    # ---- reading -------------------------------------------------------------------------------------------
    def list(self, p: Principal, *, state: str | None = None, category: str | None = None, page: int = 1,
             size: int = 20) -> dict[str, Any]:
        page, size = max(1, page), max(1, min(size, 200))
        stmt = select(Warning).where(warning_condition(p))
        if state == "open":
            stmt = stmt.where(Warning.state.in_(OPEN_STATES))
        elif state:
            stmt = stmt.where(Warning.state == state)
        if category:
            stmt = stmt.where(Warning.category == category)
        with self.store.session() as s:
            rows = list(s.scalars(stmt.order_by(Warning.id.desc()).offset((page - 1) * size).limit(size + 1)))
            items = [view(w) for w in rows[:size]]
        audit.record(self.store, p, "read", "warning", [i["id"] for i in items], f"state={state} category={category}")
        return {"items": items, "page": page, "size": size, "has_more": len(rows) > size}

    def get(self, p: Principal, warning_id: int) -> dict[str, Any]:
        with self.store.session() as s:
            w = self._own(s, p, warning_id)
            out = view(w)
            out["steps"] = [{"at": st.at.isoformat(), "actor": st.actor, "action": st.action, "note": st.note}
                            for st in s.scalars(select(WarningStep).where(WarningStep.warning_id == w.id)
                                                .order_by(WarningStep.id))]
        audit.record(self.store, p, "read", "warning", [warning_id])
        return out

    def stats(self, p: Principal) -> dict[str, Any]:
        # the city's and a county's counts from the rollup kept by the writes' triggers; the other roles' scopes
        # (station escalations, the roles a warning notifies) are counted from their warnings
        cells = {Role.city_admin: true(),
                 Role.county_admin: WarningRollup.county_code == p.county_code if p.county_code else false()}
        with self.store.session() as s:
            if p.role in cells:
                by_state, by_category = {}, {}
                for state, category, n in s.execute(
                        select(WarningRollup.state, WarningRollup.category, func.sum(WarningRollup.n))
                        .where(cells[p.role]).group_by(WarningRollup.state, WarningRollup.category)):
                    if n:
                        by_state[state] = by_state.get(state, 0) + int(n)
                        by_category[category] = by_category.get(category, 0) + int(n)
            else:
                by_state = dict(s.execute(select(Warning.state, func.count()).where(warning_condition(p))
                                          .group_by(Warning.state)).all())
                by_category = dict(s.execute(select(Warning.category, func.count()).where(warning_condition(p))
                                             .group_by(Warning.category)).all())
        return {"by_state": by_state, "by_category": by_category,
                "open": sum(n for st, n in by_state.items() if st in OPEN_STATES)}

    def station_of_area(self, police_area_id: int | None) -> int | None:
        if police_area_id is None:
            return None
        with self.store.session() as s:
            return s.scalar(select(PoliceArea.station_id).where(PoliceArea.id == police_area_id))

    def recipients(self, w: dict[str, Any]) -> list[str]:
        """Usernames that must receive a warning: officers of its 警务区 (the whole station once escalated), and
        grid workers / property staff of its grid / community where the type calls for them."""
        roles = set(w.get("notify_roles") or [])
        conds = []
        if w.get("police_area_id") is not None:
            conds.append((User.role == Role.police.value) & (User.police_area_id == w["police_area_id"]))
        if w.get("escalated_at") and w.get("station_id") is not None:
            areas = select(PoliceArea.id).where(PoliceArea.station_id == w["station_id"])
            conds.append((User.role == Role.police.value) & User.police_area_id.in_(areas))
        if "grid_worker" in roles and w.get("grid_id") is not None:
            conds.append((User.role == Role.grid_worker.value) & (User.grid_id == w["grid_id"]))
        if "property_staff" in roles and w.get("community_code"):
            conds.append((User.role == Role.property_staff.value) & (User.community_code == w["community_code"]))
        if (w.get("data") or {}).get("unplaced_device") and w.get("police_area_id") is None:
            # from a device nobody has placed: the county's duty desk (the city's when the county is unknown)
            if w.get("county_code"):
                conds.append((User.role == Role.county_admin.value) & (User.county_code == w["county_code"]))
            else:
                conds.append(User.role == Role.city_admin.value)
        if not conds:
            return []
        with self.store.session() as s:
            return sorted(s.scalars(select(User.username).where(User.active.is_(True), or_(*conds))))

    # ---- plate watchlists ----------------------------------------------------------------------------------
    def create_plate_watchlist(self, p: Principal, name: str, *, tolerant: bool = True, severity: int = 1) -> int:
        if p.role not in WATCHLIST_ADMINS:
            raise Forbidden("当前角色无权布控 / role may not manage watchlists")
        with self.store.session() as s:
            if s.scalar(select(PlateWatchlist.id).where(PlateWatchlist.name == name)) is not None:
                raise Conflict(f"布控名单已存在：{name}")
            wl = PlateWatchlist(name=name, tolerant=tolerant, severity=severity, created_by=p.username)
            s.add(wl)
            s.flush()
            wid = wl.id
        audit.record(self.store, p, "create", "plate_watchlist", [wid], name)
        self._plate_index = None
        return wid

    def add_plates(self, p: Principal, watchlist_id: int, plates: list[tuple[str, str]]) -> int:
        """Add (plate, reason) pairs; plates are validated loosely (5–8 characters after normalising)."""
        if p.role not in WATCHLIST_ADMINS:
            raise Forbidden("当前角色无权布控 / role may not manage watchlists")
        with self.store.session() as s:
            if s.get(PlateWatchlist, watchlist_id) is None:
                raise NotFound(f"布控名单不存在：{watchlist_id}")
            have = set(s.scalars(select(PlateEntry.plate).where(PlateEntry.watchlist_id == watchlist_id)))
            added = 0
            for plate, reason in plates:
                norm = normalize_plate(plate)
                if not 5 <= len(norm) <= 8:
                    raise ValidationError(f"车牌号格式有误：{plate}")
                if norm not in have:
                    s.add(PlateEntry(watchlist_id=watchlist_id, plate=norm, reason=reason[:200]))
                    have.add(norm)
                    added += 1
        audit.record(self.store, p, "update", "plate_watchlist", [watchlist_id], f"add {added}")
        self._plate_index = None
        return added

    def match_plate(self, plate: str) -> list[dict[str, Any]]:
        """Every active watchlist entry the plate matches (exact or tolerant per list)."""
        if self._plate_index is None:
            index: dict[int, tuple[PlateWatchlist, PlateIndex]] = {}
            with self.store.session() as s:
                for wl in s.scalars(select(PlateWatchlist).where(PlateWatchlist.active.is_(True))):
                    index[wl.id] = (wl, PlateIndex())
                for e in s.scalars(select(PlateEntry).where(PlateEntry.watchlist_id.in_(list(index)))):
                    index[e.watchlist_id][1].add(e.plate)
            self._plate_index = index
        out = []
        for wl, idx in self._plate_index.values():
            for m in idx.lookup(plate, tolerant=wl.tolerant):
                out.append({"watchlist_id": wl.id, "watchlist": wl.name, "severity": wl.severity,
                            "listed": m.listed, "seen": m.seen, "match": m.kind, "score": m.score})
        return out
