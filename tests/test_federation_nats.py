"""The NATS JetStream transport in one process against the local service (127.0.0.1:4222): a community publishes
its outbox to the county's stream, the county's durable consumer applies it exactly once; a node speaking another
schema is told what to upgrade and keeps its outbox. Skips where NATS is absent (fails under
ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from sqlalchemy import func, select

from anfang.core.events import Event, EventKind
from anfang.federation.forwarder import Forwarder
from anfang.federation.links import ChildCred, ParentLink
from anfang.federation.models import FedOutbox
from anfang.federation.schema import SchemaMismatch
from anfang.federation.service import FederationService
from anfang.federation.transports import NatsReceiver, NatsTransport, stream_name
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecord, append_events
from anfang.store.migrate import upgrade
from conftest import _service_missing

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def nats_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError as exc:
        _service_missing(f"NATS not reachable at {NATS_URL}: {exc}")


def _store(tmp_path, name: str) -> Store:
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    upgrade(url)
    return Store(url)


def test_nats_delivers_once_and_refuses_other_schemas(nats_up, tmp_path, monkeypatch) -> None:
    tag = uuid.uuid4().hex[:8]
    county_id, community_id = f"C{tag}", f"K{tag}"
    link = ParentLink(node_id=county_id, transport="nats", nats_url=NATS_URL, secret="k")
    community = FederationService(_store(tmp_path, "community"), node_id=community_id, role="community",
                                  parents=[link])
    community.install_outbox()
    county = FederationService(_store(tmp_path, "county"), node_id=county_id, role="county",
                               children={community_id: ChildCred(node_id=community_id, secret="k")})
    evs = [Event(kind=EventKind.alarm, source=f"d{i}", node_id=community_id) for i in range(1200)]
    with community.store.session() as s:
        append_events(s, evs)

    async def scenario() -> None:
        fwd = Forwarder(community, link, NatsTransport(link, community_id, None), batch=500)
        await fwd.transport.start()
        # the county is down: the batches wait in its stream
        while await fwd.drain_once():
            pass
        first = await asyncio.to_thread(fwd._fetch)
        assert first == []
        receiver = NatsReceiver(county, NATS_URL)
        await receiver.start()
        for _ in range(100):
            if receiver.applied >= 1200:
                break
            await asyncio.sleep(0.1)
        # the same batch published again (a forwarder killed before its delete): stored or not, applied once
        with community.store.session() as s:
            append_events(s, [Event(kind=EventKind.alarm, source="late", node_id=community_id)])
        rows = await asyncio.to_thread(fwd._fetch)
        body, _ = await asyncio.to_thread(fwd._build, rows)
        await fwd.transport.send(body, "again-1")
        await fwd.transport.send(body, "again-2")
        await fwd.drain_once()
        for _ in range(50):
            if receiver.applied >= 1203:
                break
            await asyncio.sleep(0.1)
        # a community speaking a newer schema is refused by the county's hello, and keeps its outbox
        import anfang.federation.transports as tmod

        monkeypatch.setattr(tmod, "SCHEMA", 2)
        with community.store.session() as s:
            append_events(s, [Event(kind=EventKind.alarm, source="new", node_id=community_id)])
        newer = Forwarder(community, link, NatsTransport(link, community_id, None))
        await newer.transport.start()
        with pytest.raises(SchemaMismatch, match=f"upgrade {county_id}"):
            await newer.drain_once()
        await newer.transport.close()
        await receiver.stop()
        await fwd.transport.js.delete_stream(stream_name(county_id))
        await fwd.transport.close()

    asyncio.run(scenario())
    with county.store.session() as s:
        ids = s.scalars(select(EventRecord.id)).all()
    assert len(ids) == len(set(ids)) == 1201
    with community.store.session() as s:
        assert s.scalar(select(func.count()).select_from(FedOutbox)) == 1  # the refused one waits
