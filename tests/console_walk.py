"""Walk the console as one role: every page reachable by links from the home page (and a few given start paths),
at most ``per_pattern`` pages per path shape (/persons/1 and /persons/2 are one shape), GET only, no downloads.
Used by the tests that check what every page tells every role (issue 19)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import httpx

SKIP = re.compile(r"^/(api|VIID|healthz|metrics\.prom|static|docs|openapi|redoc|logout)|\.(pdf|xlsx|csv|svg|png|jpg"
                  r"|jpeg|json|zip|geojson)$|/(sheet|image|export|download)s?/")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


@dataclass
class Page:
    path: str
    html: str
    text: str  # visible text (no script/style), one space between nodes


@dataclass
class Walk:
    pages: dict[str, Page] = field(default_factory=dict)


def shape(path: str) -> str:
    p = urlparse(path)
    return re.sub(r"/(\d+|[A-Za-z0-9_\-]{20,})(?=/|$)", "/{x}", p.path) + ("?" if p.query else "")


def login(c: httpx.Client, username: str, password: str) -> None:
    r = c.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text


def walk(base: str, username: str, password: str, *, lang: str = "zh-CN", start: tuple[str, ...] = ("/",),
         per_pattern: int = 2, limit: int = 150) -> Walk:
    out = Walk()
    seen_shapes: dict[str, int] = {}
    queue = deque(start)
    visited: set[str] = set()
    with httpx.Client(base_url=base, timeout=60, cookies={"anfang_lang": lang}) as c:
        login(c, username, password)
        while queue and len(out.pages) < limit:
            path = queue.popleft()
            if path in visited:
                continue
            visited.add(path)
            sh = shape(path)
            if seen_shapes.get(sh, 0) >= per_pattern:
                continue
            r = c.get(path)
            if r.status_code != 200 or "text/html" not in r.headers.get("content-type", ""):
                continue
            seen_shapes[sh] = seen_shapes.get(sh, 0) + 1
            parser = _Links()
            parser.feed(r.text)
            out.pages[path] = Page(path, r.text, " ".join(x.strip() for x in parser.text if x.strip()))
            for href in parser.links:
                u = urlparse(urljoin(base + path, href))
                if u.netloc != urlparse(base).netloc or u.scheme not in ("http", "https"):
                    continue
                target = u.path + (f"?{u.query}" if u.query else "")
                if SKIP.search(u.path) or "lang=" in u.query or target in visited:
                    continue
                queue.append(target)
    return out
