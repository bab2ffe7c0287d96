"""`/docs` renders the API's OpenAPI 3.1 definition in Chromium, offline (issue 19 item 1): the Swagger UI comes
from an installed package, every request off the server is blocked, and the operations list appears."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from anfang.store.migrate import upgrade
from liveserver import anfang_serve
from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable

pytestmark = pytest.mark.browser


def test_docs_page_lists_the_operations_offline(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed; browsers are never downloaded")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    upgrade(f"sqlite:///{(tmp_path / 'anfang.db').as_posix()}")
    with anfang_serve(tmp_path) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            blocked: list[str] = []

            def guard(route, request) -> None:  # noqa: ANN001
                url = urlparse(request.url)
                if url.scheme in ("data", "blob") or url.netloc == urlparse(base).netloc:
                    route.continue_()
                else:
                    blocked.append(request.url)
                    route.abort()

            page.route("**/*", guard)
            assert page.request.get(base + "/openapi.json").json()["openapi"].startswith("3.1")
            page.goto(base + "/docs")
            ops = page.locator(".opblock-summary-path, .opblock-summary-path__deprecated")
            ops.first.wait_for(timeout=30_000)
            assert ops.count() > 50, ops.count()
            paths = set(ops.all_inner_texts())
            assert {"/api/persons", "/api/warnings"} <= {x.replace("\u200b", "") for x in paths}, sorted(paths)[:20]
            assert page.locator("text=Unable to render this definition").count() == 0
            assert blocked == [], blocked
        finally:
            browser.close()
