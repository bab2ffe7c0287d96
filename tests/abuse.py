"""Shared helpers of the abuse tests (schemathesis, authorisation matrix, injection).

* ``routes(app)``: the app's whole route table, flattened (included routers, the /VIID sub-application), so a test
  that walks it covers endpoints added later without being edited.
* ``AbuseApp``: the hand-checked world of tests/world.py (three communities: 列东社区 and 下洋村 in 三元区, 府西社区 in
  沙县区) behind a running app, with a session token per role and the device credentials of the device-facing
  endpoints (an IoT door with its key).
* ``module_db``: a migrated database for a whole test module, SQLite or PostgreSQL (skips without PostgreSQL unless
  ANFANG_REQUIRE_SERVICES=1, like conftest's ``store``).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from anfang.app import create_app
from anfang.config import Settings
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from world import PASSWORD, World, build

# The logins of tests/world.py, one per role, all in 三元区 (350404) except where the role has no place.
ROLE_USERS: dict[str, str] = {
    "city_admin": "city", "county_admin": "county", "police": "police", "grid_worker": "grid",
    "property_staff": "property", "resident": "resident",
}
IOT_DEVICE = "door-ld-1"
IOT_KEY = "door-key-1"


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    name: str
    in_schema: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def _iter_contexts(routes: list[BaseRoute]) -> Iterator[Any]:
    """FastAPI ≥ 0.16x keeps included routers nested (``iter_route_contexts`` flattens them); older ones are flat."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI
        yield from routes
        return
    yield from iter_route_contexts(routes)


def routes(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app answers, HEAD folded into GET; static file mounts are not endpoints."""
    out: list[RouteInfo] = []

    def walk(items: list[BaseRoute], prefix: str) -> None:
        for r in _iter_contexts(items):
            original = getattr(r, "original_route", r)
            path = prefix + (r.path or "")
            if isinstance(original, Mount):
                if isinstance(original.app, StaticFiles):
                    continue
                walk(list(original.routes), path)
                continue
            for method in sorted((r.methods or set()) - {"HEAD"}):
                out.append(RouteInfo(method, path, r.name or "", bool(getattr(original, "include_in_schema", True))))

    walk(list(app.routes), "")
    return out


@contextmanager
def scratch_app() -> Iterator[FastAPI]:
    """An app on a throw-away SQLite file, for reading its route table and OpenAPI at collection time."""
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{Path(d) / 'anfang.db'}"
        store = Store(url)
        try:
            yield create_app(Settings(data_dir=Path(d), database_url=url), store)
        finally:
            store.dispose()


@contextmanager
def module_db(kind: str, tmp: Path) -> Iterator[str]:
    """A migrated database URL for one test module: SQLite file under tmp, or a copy of conftest's PG template."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'anfang.db'}"
        upgrade(url)
        yield url
        return
    import conftest

    admin = conftest._pg_admin()
    name = f"anfang_abuse_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{conftest._base_url(conftest.PG_ADMIN_URL)}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class AbuseApp:
    client: TestClient
    world: World
    store: Store
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return "postgresql" if self.store.url.startswith("postgresql") else "sqlite"

    @property
    def app(self) -> FastAPI:
        return self.client.app  # type: ignore[return-value]

    def login(self, role: str) -> str:
        """A further session of role (for probes that end the session they use)."""
        r = self.client.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.client.cookies.clear()
        return r.json()["token"]

    def first_chunk(self, method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and first body chunk of a response that may never end (SSE), then disconnect."""
        import anyio

        app = self.app
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        path, _, query = url.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"host", b"testserver"), *raw], "client": ("testclient", 50000),
                 "server": ("testserver", 80), "state": {}}
        out: dict[str, object] = {"status": 0, "headers": {}, "body": b""}

        async def run() -> None:
            done = anyio.Event()

            async def receive() -> dict:
                await done.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    out["status"] = message["status"]
                    out["headers"] = {k.decode(): v.decode() for k, v in message.get("headers", [])}
                elif message["type"] == "http.response.body":
                    out["body"] = out["body"] + message.get("body", b"")  # type: ignore[operator]
                    done.set()

            with anyio.move_on_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(app, scope, receive, send)
                    await done.wait()
                    await anyio.sleep(0.05)
                    tg.cancel_scope.cancel()

        self.client.portal.call(run)  # type: ignore[union-attr]
        return out["status"], out["headers"], out["body"]  # type: ignore[return-value]

    def headers(self, role: str) -> dict[str, str]:
        """Bearer header of role's session; anonymous gets none."""
        if role == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _cheap_argon2() -> None:
    from argon2 import PasswordHasher

    from anfang.security import passwords

    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # type: ignore[attr-defined]


@contextmanager
def abuse_app(url: str, data_dir: Path) -> Iterator[AbuseApp]:
    """tests/world.py behind a started app (lifespan run), every role logged in, one registered IoT door."""
    _cheap_argon2()
    store = Store(url)
    try:
        w = build(store)
        settings = Settings(data_dir=data_dir, database_url=url)
        app = create_app(settings, store)
        with TestClient(app, raise_server_exceptions=False) as client:
            a = AbuseApp(client, w, store)
            for role, user in ROLE_USERS.items():
                r = client.post("/api/auth/login", json={"username": user, "password": PASSWORD})
                assert r.status_code == 200, r.text
                a.tokens[role] = r.json()["token"]
            client.cookies.clear()  # the last login's cookie would make every later request that role's
            _register_iot_door(a)
            yield a
    finally:
        store.dispose()


def _register_iot_door(a: AbuseApp) -> None:
    """A door in 列东社区 1栋 with a device key, so /api/iot is exercised past its authentication."""
    a.app.state.devices.upsert("mqtt", IOT_DEVICE, name="1栋门禁", address_id=a.world.addr["ld-1"],
                               community_code="350404001001", password=IOT_KEY, review="approved")


def is_error_object(body: Any) -> bool:
    """The app's JSON error shape {"error": {"code", "message"}} (or GA/T 1400's ResponseStatusObject)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return {"code", "message"} <= set(body["error"])
    return isinstance(body, dict) and "ResponseStatusObject" in body


def skip_unless_pg() -> None:
    import conftest

    conftest._pg_admin()  # skips (or fails under ANFANG_REQUIRE_SERVICES=1) when PostgreSQL is absent

