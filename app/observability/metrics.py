"""Prometheus figures: read from the store at scrape time, plus HTTP request latency."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.storage.store import Store


class StoreCollector(Collector):
    """Runs by status, model calls and cost by model and role, tool calls, pending approvals."""

    def __init__(self, store: Store, tenant: str | None = None) -> None:
        self.store = store
        self.tenant = tenant

    def collect(self) -> Iterator[Metric]:
        """Read the figures now (all tenants, or the one this collector is for)."""
        runs = GaugeMetricFamily("foreman_runs", "Runs by status", labels=["status"])
        counts = self.store.run_counts(self.tenant)
        for status in ("pending", "running", "success", "error", "timeout", "interrupted"):
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        calls = CounterMetricFamily("foreman_model_calls", "Model calls",
                                    labels=["model", "role"])
        cost = CounterMetricFamily("foreman_model_cost_usd", "Model cost in USD",
                                   labels=["model", "role"])
        tokens = CounterMetricFamily("foreman_model_tokens", "Model tokens",
                                     labels=["model", "role"])
        for row in self.store.model_usage(self.tenant):
            labels = [row["model"], row["role"]]
            calls.add_metric(labels, row["calls"])
            cost.add_metric(labels, float(row["cost_usd"]))
            tokens.add_metric(labels, row["tokens"])
        yield calls
        yield cost
        yield tokens
        tools = CounterMetricFamily("foreman_tool_calls", "Tool calls", labels=["tool"])
        for tool, n in self.store.tool_counts(self.tenant).items():
            tools.add_metric([tool], n)
        yield tools
        yield GaugeMetricFamily("foreman_approvals_pending", "Runs paused for an approval",
                                value=counts.get("interrupted", 0))


class Metrics:
    """One registry per app (tests run several apps in one process)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        self.latency = Histogram("foreman_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route", "status"],
                                 registry=self.registry)

    def of_tenant(self, tenant: str) -> CollectorRegistry:
        """A registry with one tenant's figures only (no HTTP latency: that is the
        platform's)."""
        registry = CollectorRegistry()
        registry.register(StoreCollector(self.store, tenant))
        return registry
