"""/metrics for Prometheus (prometheus-client): what an operator of a city platform watches in Grafana.

- ``anfang_devices{protocol,status,tier}`` — devices by protocol and state; ``tier`` is this node's tier (role)
- ``anfang_ingest_total{adapter,result}`` — messages accepted and refused per adapter (iot: MQTT/HTTP doors and
  sensors by refusal reason; viid: GA/T 1400 objects; gb28181: registrations, refusals, alarms, keepalives)
- ``anfang_event_log_recorded_total`` — events committed by the event recorder of this process
- ``anfang_bus_consumer_lag_seconds{consumer}`` / ``_lag_events`` / ``_queued`` — how far each durable consumer of
  the embedded bus is behind the event log (its cursor), and its queue
- ``anfang_federation_backlog{parent}`` / ``anfang_federation_backlog_age_seconds{parent}`` — outbox rows not yet
  acknowledged by each parent, and the age of the oldest
- ``anfang_warnings{state}``, ``anfang_webhook_deliveries{state}``
- ``anfang_http_request_seconds{method,route,status}`` — request latencies (route = the matched route's template)

State figures are read from the database at scrape time (grouped counts over indexed columns). The endpoint needs
no session; it answers only to the addresses in ``metrics_allow`` (default: this host) or to
``Authorization: Bearer <metrics_token>`` when a token is set. ``/metrics`` is also the console's page of the
registry's figures (一标三实 rates): a request that accepts HTML, or that is neither allowed nor carries the token,
gets that page (or its login redirect); ``/metrics/prometheus`` is the scrape endpoint without the page (403 for
anyone else).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = structlog.get_logger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _State(Collector):
    def __init__(self, app: Any, settings: Any) -> None:
        self.app, self.settings = app, settings

    def collect(self) -> Iterator[Any]:
        st = self.app.state
        try:
            yield from self._database(st)
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.exception("metrics_database_failed")
        ingest = CounterMetricFamily("anfang_ingest", "Messages accepted and refused per adapter",
                                     labels=["adapter", "result"])
        iot = getattr(st, "iot", None)
        for result, n in sorted((iot.counts if iot is not None else {}).items()):
            ingest.add_metric(["iot", result], n)
        for result, n in sorted(getattr(st, "metrics", None).viid.items() if getattr(st, "metrics", None) else []):
            ingest.add_metric(["viid", result], n)
        gb = getattr(st, "gb28181", None)
        for result, n in sorted((gb.stats if gb is not None else {}).items()):
            ingest.add_metric(["gb28181", result], n)
        yield ingest
        recorder = getattr(st, "recorder", None)
        recorded = CounterMetricFamily("anfang_event_log_recorded", "Events committed by this process's recorder")
        recorded.add_metric([], recorder.recorded if recorder is not None else 0)
        yield recorded
        cursors = getattr(st.bus, "cursors", None)
        queued = GaugeMetricFamily("anfang_bus_consumer_queued", "Events waiting in a consumer's queue",
                                   labels=["consumer"])
        lag_s = GaugeMetricFamily("anfang_bus_consumer_lag_seconds",
                                  "Seconds between now and the consumer's cursor (0 when idle)", labels=["consumer"])
        for c in cursors() if cursors is not None else []:
            queued.add_metric([c["consumer"]], c["queued"])
            behind = 0.0
            if c["queued"] and c["position"] is not None:
                from anfang.store.base import utcnow

                behind = max(0.0, (utcnow() - c["position"]).total_seconds())
            lag_s.add_metric([c["consumer"]], behind)
        yield queued
        yield lag_s

    def _database(self, st: Any) -> Iterator[Any]:
        from anfang.federation.models import FedOutbox
        from anfang.rollups.models import DeviceRollup, WarningRollup
        from anfang.store.base import utcnow
        from anfang.store.eventlog import BusCursor, EventRecord
        from anfang.warnings.models import WebhookDelivery

        tier = str(getattr(self.settings.role, "value", self.settings.role))
        now = utcnow()
        with st.store.session() as s:
            devices = GaugeMetricFamily("anfang_devices", "Devices by protocol and status",
                                        labels=["protocol", "status", "tier"])
            # devices and warnings: from the rollups the writes' triggers keep (anfang.rollups), not a scan
            for protocol, status, n in s.execute(select(DeviceRollup.protocol, DeviceRollup.status,
                                                        func.sum(DeviceRollup.n))
                                                 .group_by(DeviceRollup.protocol, DeviceRollup.status)):
                if n:
                    devices.add_metric([protocol or "", status or "", tier], int(n))
            yield devices
            warnings = GaugeMetricFamily("anfang_warnings", "Warnings by state", labels=["state"])
            for state, n in s.execute(select(WarningRollup.state, func.sum(WarningRollup.n))
                                      .group_by(WarningRollup.state)):
                if n:
                    warnings.add_metric([state], int(n))
            yield warnings
            hooks = GaugeMetricFamily("anfang_webhook_deliveries", "Webhook deliveries by state", labels=["state"])
            for state, n in s.execute(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)):
                hooks.add_metric([state], n)
            yield hooks
            backlog = GaugeMetricFamily("anfang_federation_backlog", "Outbox rows not yet acknowledged by a parent",
                                        labels=["parent"])
            age = GaugeMetricFamily("anfang_federation_backlog_age_seconds", "Age of the oldest unsent outbox row",
                                    labels=["parent"])
            for parent, n, oldest in s.execute(select(FedOutbox.parent, func.count(), func.min(FedOutbox.created_at))
                                               .group_by(FedOutbox.parent)):
                backlog.add_metric([parent], n)
                if oldest is not None:
                    if oldest.tzinfo is None:
                        from datetime import UTC

                        oldest = oldest.replace(tzinfo=UTC)
                    age.add_metric([parent], max(0.0, (now - oldest).total_seconds()))
            yield backlog
            yield age
            lag = GaugeMetricFamily("anfang_bus_consumer_lag_events",
                                    "Events recorded after a durable consumer's saved cursor", labels=["consumer"])
            for cur in s.scalars(select(BusCursor)):
                n = s.scalar(select(func.count()).select_from(EventRecord)
                             .where(EventRecord.recorded_at > cur.position))
                lag.add_metric([cur.consumer], n or 0)
            yield lag


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, app: Any, settings: Any) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.requests = Histogram("anfang_http_request_seconds", "HTTP request latency",
                                  ["method", "route", "status"], buckets=BUCKETS, registry=self.registry)
        self.viid: Tally[str] = Tally()
        self.registry.register(_State(app, settings))

    def allowed(self, request: Request) -> bool:
        token = self.settings.metrics_token
        header = request.headers.get("authorization", "")
        if token and header.lower().startswith("bearer "):
            import hmac

            return hmac.compare_digest(header[7:].strip(), token)
        host = request.client.host if request.client else ""
        return host in self.settings.metrics_allow

    def render(self, request: Request) -> Response:
        if not self.allowed(request):
            return JSONResponse({"error": {"code": "forbidden", "message": "仅允许监控系统访问 / metrics are for the "
                                           "configured monitoring hosts or token only", "detail": None}}, 403)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestTimer:
    """ASGI middleware: observes each HTTP request's latency under its route template (bounded label values)."""

    def __init__(self, app: Any, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in ("/metrics", "/metrics/prometheus") and scope.get("method") == "GET":
            request = Request(scope, receive)
            scraper = "text/html" not in request.headers.get("accept", "") and self.metrics.allowed(request)
            if path == "/metrics/prometheus" or scraper:
                response = await run_in_threadpool(self.metrics.render, request)  # database reads: off the loop
                await response(scope, receive, send)
                return
        t0 = time.perf_counter()
        status = [500]

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/VIID" if scope.get("path", "").startswith("/VIID")
                                                    else "unmatched")
            self.metrics.requests.labels(scope.get("method", ""), path, str(status[0])).observe(
                time.perf_counter() - t0)


def install(app: Any, settings: Any) -> Metrics:
    metrics = app.state.metrics = Metrics(app, settings)
    app.add_middleware(RequestTimer, metrics=metrics)
    return metrics
