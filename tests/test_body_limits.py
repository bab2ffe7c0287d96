"""Request bodies are bounded while they are read (issue 17, item 3): a body past its route class's limit is
refused with 413 and the JSON error object before it is read in full; the limit is stricter for requests that are
not (yet) authenticated."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from world import PASSWORD, build

MB = 1024 * 1024


@pytest.fixture
def client_world(store, tmp_path):
    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        yield c, w


def _token(c: TestClient) -> str:
    r = c.post("/api/auth/login", json={"username": "police", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _is_413(r) -> None:  # noqa: ANN001
    assert r.status_code == 413, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == "too_large" and "字节" in err["message"] and "bytes" in err["message"]


def test_large_bodies_before_login_are_413(client_world) -> None:
    c, _ = client_world
    big = b'{"username": "police", "password": "' + b"x" * (2 * MB) + b'"}'
    _is_413(c.post("/api/auth/login", content=big, headers={"content-type": "application/json"}))
    _is_413(c.post("/api/iot/perimeter/any-device", content=big, headers={"content-type": "application/json"}))
    # no Content-Length (chunked): refused while reading, same answer
    _is_413(c.post("/api/auth/login", content=(big[i:i + 65536] for i in range(0, len(big), 65536)),
                   headers={"content-type": "application/json"}))
    # a made-up token does not buy the authenticated limit
    _is_413(c.post("/api/persons", content=b"[" + b"1," * (300 * 1024) + b"1]",
                   headers={"content-type": "application/json", "authorization": "Bearer made-up"}))
    # small bodies still reach the routes
    r = c.post("/api/auth/login", json={"username": "police", "password": "nope-nope"})
    assert r.status_code == 401


def test_authenticated_json_limit_and_uploads(client_world) -> None:
    c, _ = client_world
    h = {"authorization": f"Bearer {_token(c)}", "content-type": "application/json"}
    mid = b'{"pad": "' + b"x" * (200 * 1024) + b'"}'  # past the pre-login limit, within the JSON API's
    r = c.post("/api/persons", content=mid, headers=h)
    assert r.status_code != 413 and r.status_code < 500
    _is_413(c.post("/api/persons", content=b'{"pad": "' + b"x" * (3 * MB) + b'"}', headers=h))
    # an upload route has its own, larger limit
    r = c.post("/api/security/trace", files={"file": ("leak.csv", b"a,b\n" * (600 * 1024), "text/csv")},
               headers={"authorization": h["authorization"]})
    assert r.status_code != 413


def test_limit_is_enforced_while_reading_not_after(client_world) -> None:
    """The ASGI app asks for at most a few chunks of a 50 MB body without Content-Length before answering 413."""
    c, _ = client_world
    app = c.app
    chunk = b"x" * 65536
    asked = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": chunk, "more_body": asked < 800}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/auth/login", "raw_path": b"/api/auth/login", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "state": {}, "app": app}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert asked <= 4, f"{asked} chunks ({asked * 64} KiB) read before refusing"
