"""Prometheus metrics fed by the service's observer events.

Each shop has its own registry, so two shops in one process (tests, the two example
servers) never mix their counts. Orders by status are read from the store at scrape
time, so they are right across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from bitloot_core.chart import JobKind, OrderStatus


class _OrdersByStatus(Collector):
    def __init__(self, count: Callable[[], dict[OrderStatus, int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("bitloot_orders", "Orders by status", labels=["status"])
        for status, value in sorted(self._count().items()):
            family.add_metric([str(status)], value)
        yield family


class ShopMetrics:
    """Counters for IPNs, fulfillment, emails and requests; an ``Observer`` too."""

    def __init__(self, count_orders: Callable[[], dict[OrderStatus, int]]) -> None:
        self.registry = CollectorRegistry()
        self.ipns = Counter(
            "bitloot_ipn",
            "IPNs received, by outcome (applied, duplicate, ignored, rejected) and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.fulfillment_attempts = Counter(
            "bitloot_fulfillment_attempts", "Fulfillment attempts", registry=self.registry
        )
        self.fulfillment_failures = Counter(
            "bitloot_fulfillment_failures",
            "Failed fulfillment attempts, by outcome (retry, dead)",
            ["outcome"],
            registry=self.registry,
        )
        self.emails_sent = Counter(
            "bitloot_emails_sent",
            "Emails accepted by the mail server",
            ["kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bitloot_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(_OrdersByStatus(count_orders))

    def observe(self, event: str, /, **fields: object) -> None:
        if event == "ipn":
            self.ipns.labels(str(fields.get("outcome")), str(fields.get("reason"))).inc()
        elif event == "job_started" and fields.get("kind") == JobKind.FULFILL:
            self.fulfillment_attempts.inc()
        elif event == "job_failed" and fields.get("kind") == JobKind.FULFILL:
            self.fulfillment_failures.labels(str(fields.get("outcome"))).inc()
        elif event == "email_sent":
            self.emails_sent.labels(str(fields.get("kind"))).inc()

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
