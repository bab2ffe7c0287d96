"""Domain operations of the federation (no HTTP): apply a child's batch idempotently and in per-entity order,
forward it further up through this node's own outbox, node authentication, uplink state and aggregated views."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from anfang.federation.links import ChildCred, ParentLink
from anfang.federation.models import FedBlob, FedNode, FedOutbox, FedRecord
from anfang.federation.outbox import Outbox, seal_fields, suppressed
from anfang.federation.schema import SCHEMA, Batch, Envelope, check_schema
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecord

NODE_HEADER, TIME_HEADER, SIG_HEADER = "X-Anfang-Node", "X-Anfang-Time", "X-Anfang-Signature"
MAX_SKEW_S = 300.0


class AuthError(Exception):
    pass


# -- node authentication: HMAC-SHA256 over (node, time, SHA-256 of the body) ------------------------------------
# Hand-written on purpose: a dozen lines of the standard library's hmac; the HTTP client side is an httpx.Auth
# (transports.py), and the same signature travels in NATS message headers, which no HTTP signing library covers.
def sign(secret: str, node: str, ts: str, body: bytes) -> str:
    msg = f"{node}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_headers(secret: str, node: str, body: bytes) -> dict[str, str]:
    ts = f"{time.time():.3f}"
    return {NODE_HEADER: node, TIME_HEADER: ts, SIG_HEADER: sign(secret, node, ts, body)}


def verify(children: dict[str, ChildCred], headers: Any, body: bytes, *, now: float | None = None) -> ChildCred:
    node = headers.get(NODE_HEADER) or ""
    cred = children.get(node)
    if cred is None:
        raise AuthError(f"未登记的下级节点 / unknown child node {node!r}")
    try:
        ts = float(headers.get(TIME_HEADER) or "")
    except ValueError:
        raise AuthError("缺少签名时间 / missing signature time") from None
    if abs((now or time.time()) - ts) > MAX_SKEW_S:
        raise AuthError(f"签名时间偏差过大 / signature time off by more than {MAX_SKEW_S:.0f} s (check the clock)")
    expected = sign(cred.secret, node, headers.get(TIME_HEADER), body)
    if not hmac.compare_digest(expected, headers.get(SIG_HEADER) or ""):
        raise AuthError(f"节点签名错误 / bad signature from node {node}")
    return cred


def _upsert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _event_row(env: Envelope) -> dict[str, Any]:
    d = env.data
    at = datetime.fromisoformat(d.get("at") or env.at)
    return {"id": env.key, "kind": d.get("kind", "alarm"), "at": at, "source": d.get("source") or "",
            "node_id": d.get("node_id") or env.origin, "community_code": d.get("community_code"),
            "address_id": d.get("address_id"), "longitude": d.get("longitude"), "latitude": d.get("latitude"),
            "data": {k: v for k, v in (d.get("data") or {}).items()}}


def _chunks(items: list[Any], n: int = 400) -> list[list[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


class FederationService:
    def __init__(self, store: Store, *, node_id: str, role: str, parents: list[ParentLink] | None = None,
                 children: dict[str, ChildCred] | None = None) -> None:
        self.store, self.node_id, self.role = store, node_id, role
        self.parents = parents or []
        self.children = children or {}
        self.outbox = Outbox(node_id, [p.node_id for p in self.parents])

    def install_outbox(self) -> None:
        self.outbox.install(self.store)

    # -- ingest ---------------------------------------------------------------------------------------------------
    def parse(self, body: bytes, schema_header: Any, sender: str) -> Batch:
        check_schema(schema_header, me=self.node_id, sender=sender)
        raw = orjson.loads(body)
        check_schema(raw.get("schema"), me=self.node_id, sender=sender)
        return Batch.model_validate(raw)

    def apply(self, batch: Batch, via: str) -> dict[str, int]:
        """Apply a batch in one transaction; returns counts. Safe to repeat: events are keyed by their global id,
        entity changes by (origin, entity, key) with the highest version kept."""
        dialect = self.store.engine.dialect.name
        ins = _upsert(dialect)
        for e in batch.items:
            if e.sealed:  # personal data: sealed with this node's data key before it is stored anywhere here
                seal_fields(e.data, e.sealed)
        with suppressed(), self.store.session() as s:
            events = [e for e in batch.items if e.entity == "event"]
            others = [e for e in batch.items if e.entity != "event"]
            seen: set[str] = set()
            for chunk in _chunks([e.key for e in events]):
                seen.update(s.scalars(select(EventRecord.id).where(EventRecord.id.in_(chunk))))
            new_events: list[Envelope] = []
            for e in events:
                if e.key not in seen:
                    seen.add(e.key)
                    new_events.append(e)
            if new_events:
                s.execute(ins(EventRecord).on_conflict_do_nothing(), [_event_row(e) for e in new_events])
            # entity changes: keep the newest version of each (origin, entity, key)
            current: dict[tuple[str, str, str], int] = {}
            keys = list({(e.origin, e.entity, e.key) for e in others})
            for chunk in _chunks(keys):
                ident = tuple_(FedRecord.origin, FedRecord.entity, FedRecord.key)
                for o, en, k, v in s.execute(select(FedRecord.origin, FedRecord.entity, FedRecord.key,
                                                    FedRecord.version).where(ident.in_(chunk))):
                    current[(o, en, k)] = v
            newest: dict[tuple[str, str, str], Envelope] = {}
            accepted: list[Envelope] = []
            for e in others:
                k = (e.origin, e.entity, e.key)
                if e.version > current.get(k, -1):
                    current[k] = e.version
                    newest[k] = e
                    accepted.append(e)
            # capture records (the event's photos and GA/T 1400 body travel with it)
            captures = [e for e in new_events if e.data.get("capture")]
            now = datetime.now(UTC)
            rows = [{"origin": e.origin, "entity": e.entity, "key": e.key, "version": e.version, "gid": e.gid,
                     "op": e.op, "via": via, "received_at": now, "data": e.data} for e in newest.values()]
            rows += [{"origin": e.origin, "entity": "capture", "key": e.key, "version": 1, "gid": e.gid,
                      "op": "append", "via": via, "received_at": now, "data": e.data["capture"]} for e in captures]
            if rows:
                stmt = ins(FedRecord)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["origin", "entity", "key"],
                    set_={c: stmt.excluded[c] for c in ("version", "gid", "op", "via", "received_at", "data")},
                    where=FedRecord.version < stmt.excluded.version)
                s.execute(stmt, rows)
            wanted = {h for e in captures for h in e.blobs}
            if wanted:
                blobs = [{"sha256": h, "data": base64.b64decode(batch.blobs[h])} for h in sorted(wanted)
                         if h in batch.blobs]
                if blobs:
                    s.execute(ins(FedBlob).on_conflict_do_nothing(), blobs)
            forward = new_events + accepted
            if forward and self.outbox.parents:
                for e in forward:
                    e.path = [*e.path, self.node_id]
                s.execute(insert(FedOutbox), self.outbox.rows(forward))
            self._touch_nodes(s, batch, via, Counter(e.origin for e in forward))
        return {"received": len(batch.items), "applied": len(forward),
                "duplicates": len(batch.items) - len(forward)}

    def _touch_nodes(self, s: Session, batch: Batch, via: str, per_origin: Counter[str]) -> None:
        now = datetime.now(UTC)
        ids = set(per_origin) | {via}
        nodes = {n.node_id: n for n in s.scalars(select(FedNode).where(FedNode.node_id.in_(ids)))}
        for nid in ids:
            n = nodes.get(nid)
            if n is None:
                n = FedNode(node_id=nid, received=0, uplink={})
                s.add(n)
            n.received = (n.received or 0) + per_origin.get(nid, 0)
            n.last_seen = now if nid == via else (n.last_seen or now)
            n.parent = self.node_id if nid == via else via
            if nid == via:
                n.role = batch.role
                n.schema_version = batch.schema_
                n.uplink = batch.uplink.model_dump()
                n.last_error = None
            elif n.role is None:
                n.role = "community"

    def record_rejection(self, node: str, message: str, schema: int | None = None) -> None:
        with self.store.session() as s:
            n = s.get(FedNode, node) or FedNode(node_id=node, received=0, uplink={})
            n.last_error, n.last_seen = message[:400], datetime.now(UTC)
            if schema is not None:
                n.schema_version = schema
            s.add(n)

    # -- uplink state -------------------------------------------------------------------------------------------
    def save_link_state(self, parent: str, state: dict[str, Any]) -> None:
        with self.store.session() as s:
            n = s.get(FedNode, f"^{parent}") or FedNode(node_id=f"^{parent}", role="parent", parent=parent,
                                                        received=0, uplink={})
            n.uplink = state
            n.last_seen = datetime.now(UTC)
            s.add(n)

    def backlog(self, parent: str) -> tuple[int, datetime | None]:
        with self.store.session() as s:
            n, oldest = s.execute(select(func.count(), func.min(FedOutbox.created_at))
                                  .where(FedOutbox.parent == parent)).one()
        if isinstance(oldest, str):  # SQLite returns min() of a datetime column as text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(n), oldest

    def uplinks(self) -> list[dict[str, Any]]:
        out = []
        now = datetime.now(UTC)
        with self.store.session() as s:
            saved = {n.parent: n for n in s.scalars(select(FedNode).where(FedNode.role == "parent"))}
        for p in self.parents:
            n, oldest = self.backlog(p.node_id)
            st = dict(saved[p.node_id].uplink) if p.node_id in saved else {}
            fresh = p.node_id in saved and saved[p.node_id].last_seen is not None and \
                (now - saved[p.node_id].last_seen).total_seconds() < 15
            out.append({"parent": p.node_id, "transport": p.transport, "url": p.url or p.nats_url,
                        "connected": bool(st.get("connected")) and fresh, "forwarder_running": fresh,
                        "backlog": n, "oldest_pending": oldest.isoformat() if oldest else None,
                        "lag_s": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
                        "sent": st.get("sent", 0), "last_ok": st.get("last_ok"), "last_error": st.get("last_error"),
                        "rate": st.get("rate", 0.0)})
        return out

    # -- aggregated views ---------------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """Per child node (direct and below): events received, devices and online rate, warnings per level."""
        now = datetime.now(UTC)
        with self.store.session() as s:
            nodes = list(s.scalars(select(FedNode).where(or_(FedNode.role.is_(None), FedNode.role != "parent"))
                                   .order_by(FedNode.node_id)))
            # only the listed children's events (the node's own — most of the log — are not counted, and a node
            # without children reads nothing); a per-node counter would bound this too (benchmarks/README.md)
            ids = [n.node_id for n in nodes]
            events = dict(s.execute(select(EventRecord.node_id, func.count()).where(EventRecord.node_id.in_(ids))
                                    .group_by(EventRecord.node_id)).all()) if ids else {}
            devices: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            warnings: dict[str, Counter[str]] = defaultdict(Counter)
            for origin, entity, op, data in s.execute(
                    select(FedRecord.origin, FedRecord.entity, FedRecord.op, FedRecord.data)
                    .where(FedRecord.entity.in_(["device", "warning"]))):
                if op == "delete":
                    continue
                if entity == "device":
                    devices[origin][0] += 1
                    devices[origin][1] += 1 if (data or {}).get("status") == "online" else 0
                else:
                    warnings[origin][str((data or {}).get("severity", "?"))] += 1
        rows = []
        for n in nodes:
            total, online = devices.get(n.node_id, [0, 0])
            age = (now - n.last_seen).total_seconds() if n.last_seen else None
            rows.append({"node_id": n.node_id, "role": n.role, "via": n.parent, "direct": n.parent == self.node_id,
                         "last_seen": n.last_seen.isoformat() if n.last_seen else None,
                         "online": age is not None and age < 60 and n.parent == self.node_id,
                         "received": n.received, "events": events.get(n.node_id, 0), "devices": total,
                         "devices_online": online, "online_rate": round(online / total, 4) if total else None,
                         "warnings": dict(sorted(warnings.get(n.node_id, Counter()).items())),
                         "schema": n.schema_version, "last_error": n.last_error, "uplink": n.uplink or {}})
        levels: Counter[str] = Counter()
        for c in warnings.values():
            levels.update(c)
        # one group per direct child: the child, the nodes it delivers for (a county's communities), their sums
        groups = []
        for head in (r for r in rows if r["direct"]):
            members = [head] + [r for r in rows if not r["direct"] and r["via"] == head["node_id"]]
            dev = sum(r["devices"] for r in members)
            on = sum(r["devices_online"] for r in members)
            w: Counter[str] = Counter()
            for r in members:
                w.update(r["warnings"])
            groups.append({"head": head, "members": members[1:],
                           "totals": {"nodes": len(members), "events": sum(r["events"] for r in members),
                                      "devices": dev, "devices_online": on,
                                      "online_rate": round(on / dev, 4) if dev else None,
                                      "warnings": dict(sorted(w.items()))}})
        total_dev = sum(v[0] for v in devices.values())
        total_on = sum(v[1] for v in devices.values())
        return {"node_id": self.node_id, "role": self.role, "schema": SCHEMA, "children": rows, "groups": groups,
                "totals": {"nodes": len(rows), "events": sum(r["events"] for r in rows),
                           "devices": total_dev, "devices_online": total_on,
                           "online_rate": round(total_on / total_dev, 4) if total_dev else None,
                           "warnings": dict(sorted(levels.items()))}}

    def purge_outbox(self, parent: str) -> int:
        """Drop what is owed to a parent that was removed from the configuration (operator's decision)."""
        with self.store.session() as s:
            return s.execute(delete(FedOutbox).where(FedOutbox.parent == parent)).rowcount or 0
