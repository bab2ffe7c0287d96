"""/metrics for Prometheus (issue 17, item 9): scraped without a session by an allowed address or with the token,
refused otherwise; the figures move with what the node does (ingest, warnings, consumer lag, federation backlog,
request latencies)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from anfang.app import create_app
from anfang.config import Settings
from anfang.devices.service import DeviceService


def value(text: str, name: str, **labels: str) -> float | None:
    """The first sample ``name`` whose labels include ``labels`` (prometheus-client's own parser)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@pytest.fixture
def client(store, tmp_path):
    DeviceService(store).upsert("mqtt", "smoke-m1", name="烟感")
    settings = Settings(data_dir=tmp_path, database_url=store.url, metrics_token="scrape-secret",
                        warning_escalate_minutes=60)
    with TestClient(create_app(settings, store)) as c:
        yield c


def test_metrics_need_the_token_or_an_allowed_address(client: TestClient) -> None:
    # the test client's address is not in metrics_allow: the scrape endpoint refuses, and /metrics stays the
    # console's page of the registry's figures (login first)
    assert client.get("/metrics/prometheus").status_code == 403
    assert client.get("/metrics/prometheus", headers={"authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", follow_redirects=False).status_code == 303
    for path in ("/metrics", "/metrics/prometheus"):
        r = client.get(path, headers={"authorization": "Bearer scrape-secret"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "anfang_ingest_total" in r.text
    # a browser with the token still gets the console page at /metrics
    page = client.get("/metrics", headers={"authorization": "Bearer scrape-secret", "accept": "text/html"},
                      follow_redirects=False)
    assert page.status_code == 303


def test_metrics_follow_ingest_warnings_and_lag(client: TestClient) -> None:
    auth = {"authorization": "Bearer scrape-secret"}
    before = client.get("/metrics", headers=auth).text
    assert value(before, "anfang_devices", protocol="mqtt", status="unknown") == 1 or \
        value(before, "anfang_devices", protocol="mqtt") == 1
    for _ in range(3):
        assert client.post("/api/iot/smoke/smoke-m1", json={"alarm": True}).status_code == 202
    assert client.post("/api/iot/smoke/smoke-m1", json={"alarm": "maybe"}).status_code == 422
    assert client.post("/api/iot/smoke/nobody", json={"alarm": True}).status_code == 404
    deadline = time.monotonic() + 10
    while True:
        text = client.get("/metrics", headers=auth).text
        # the warning is counted at its commit; the two duplicate alarms may still be queued behind it a moment
        done = value(text, "anfang_bus_consumer_queued", consumer="warnings") == 0
        if (value(text, "anfang_warnings", state="dispatched") and done) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert value(text, "anfang_ingest_total", adapter="iot", result="accepted") == 3
    assert value(text, "anfang_ingest_total", adapter="iot", result="invalid") == 1
    assert value(text, "anfang_ingest_total", adapter="iot", result="unknown_device") == 1
    assert value(text, "anfang_event_log_recorded_total") == 3
    assert value(text, "anfang_warnings", state="dispatched") == 1  # three alarms, one warning (dedup)
    assert value(text, "anfang_bus_consumer_queued", consumer="warnings") == 0
    assert value(text, "anfang_bus_consumer_lag_events", consumer="warnings") is not None
    assert (value(text, "anfang_http_request_seconds_count", method="POST", route="/api/iot/{kind}/{device_id}",
                  status="202") or 0) >= 3
