"""The Prometheus exporter, checked by parsing real exposition text, and the OpenTelemetry
bridge that docs/metrics.md shows, run against the OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import gc
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import asyncq
from asyncq import metrics
from tests.conftest import Flaky, Gate, assert_conserved, until

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> tuple[Samples, dict[str, str]]:
    """Render the registry, parse the text back: samples by (name, labels), family types."""
    text = generate_latest(registry).decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def noop(i: int) -> int:
    return i


async def refuse() -> None:
    raise ConnectionError("refused")


async def test_scrape_reports_real_jobs() -> None:
    """Successes, a retry, a dead letter and a cancel show up in the parsed exposition."""
    registry = CollectorRegistry()
    retry = asyncq.Retry(attempts=2, delay=0.0, jitter=False)
    async with asyncq.Pool(workers=2, maxsize=100, retry=retry) as pool:
        metrics.PrometheusCollector(pool, name="main", registry=registry)
        assert await pool.map(noop, range(32)) == list(range(32))
        assert await (await pool.submit(Flaky(1, error=TimeoutError).run)) == "ok"
        dead = await pool.submit(refuse)
        with pytest.raises(ConnectionError):
            await dead
        later = await pool.options(delay=60).submit(noop, 0)
        assert later.cancel()
        stats = pool.stats()
        samples, types = scrape(registry)
    expected = {"submitted": 35, "succeeded": 33, "dead": 1, "cancelled": 1}
    for field, count in expected.items():
        assert value(samples, f"asyncq_jobs_{field}_total", pool="main") == count
        assert getattr(stats, field) == count
    assert value(samples, "asyncq_attempts_failed_total", pool="main") == 3
    assert value(samples, "asyncq_attempts_retried_total", pool="main") == 2
    for gauge, expected_value in (("asyncq_jobs_waiting", 0), ("asyncq_jobs_delayed", 0),
                                  ("asyncq_jobs_running", 0), ("asyncq_workers", 2),
                                  ("asyncq_dead_letters", 1)):
        assert value(samples, gauge, pool="main") == expected_value
        assert types[gauge] == "gauge"
    for counter in ("asyncq_jobs_submitted", "asyncq_attempts_retried"):
        assert types[counter] == "counter"
    assert all(dict(labels)["pool"] == "main" for _, labels in samples)


async def test_latency_is_quantile_gauges() -> None:
    """queue_wait and run_time are gauges labelled quantile 0.5/0.95/0.99, with a sample count."""
    registry = CollectorRegistry()
    async with asyncq.Pool(workers=2) as pool:
        metrics.PrometheusCollector(pool, name="p", registry=registry)
        await pool.map(noop, range(64))
        stats = pool.stats()
        samples, types = scrape(registry)
    for prefix, latency in (("asyncq_queue_wait", stats.queue_wait),
                            ("asyncq_run_time", stats.run_time)):
        assert types[f"{prefix}_seconds"] == "gauge"
        assert value(samples, f"{prefix}_samples", pool="p") == latency.samples > 0
        quantiles = [value(samples, f"{prefix}_seconds", pool="p", quantile=q)
                     for q in ("0.5", "0.95", "0.99")]
        assert quantiles == [latency.p50, latency.p95, latency.p99]
        assert 0 <= quantiles[0] <= quantiles[1] <= quantiles[2]


def test_quantiles_are_nan_before_any_sample() -> None:
    """A pool not started yet exports zeros, its worker count, and NaN quantiles."""
    registry = CollectorRegistry()
    metrics.PrometheusCollector(asyncq.Pool(workers=3), name="new", registry=registry)
    samples, _ = scrape(registry)
    assert value(samples, "asyncq_workers", pool="new") == 3
    assert value(samples, "asyncq_jobs_submitted_total", pool="new") == 0
    assert value(samples, "asyncq_run_time_samples", pool="new") == 0
    assert math.isnan(value(samples, "asyncq_run_time_seconds", pool="new", quantile="0.5"))


async def test_gauges_follow_jobs_in_flight(gate: Gate) -> None:
    """Scraped while jobs run, wait and sit on a timer, the gauges match the pool."""
    registry = CollectorRegistry()
    async with asyncq.Pool(workers=2, maxsize=10) as pool:
        metrics.PrometheusCollector(pool, name="busy", registry=registry)
        jobs = [await pool.submit(gate.wait, i) for i in range(5)]
        later = await pool.options(delay=60).submit(noop, 0)
        await until(lambda: gate.inside == 2)
        samples, _ = scrape(registry)
        assert value(samples, "asyncq_jobs_running", pool="busy") == 2
        assert value(samples, "asyncq_jobs_waiting", pool="busy") == 3
        assert value(samples, "asyncq_jobs_delayed", pool="busy") == 1
        assert value(samples, "asyncq_jobs_submitted_total", pool="busy") == 6
        assert_conserved(pool.stats())
        later.cancel()
        gate.open()
        assert [await job for job in jobs] == list(range(5))


async def test_balancing_gauges(gate: Gate) -> None:
    """A busy key, a job queued behind it and one waiting on a dependency are exported."""
    registry = CollectorRegistry()
    async with asyncq.Pool(workers=4) as pool:
        metrics.PrometheusCollector(pool, name="keys", registry=registry)
        first = await pool.options(key="db").submit(gate.wait, 1)
        second = await pool.options(key="db").submit(gate.wait, 2)
        after = await pool.options(after=[first]).submit(noop, 3)
        await until(lambda: gate.inside == 1)
        samples, _ = scrape(registry)
        assert value(samples, "asyncq_keys_busy", pool="keys") == 1
        assert value(samples, "asyncq_jobs_queued_behind_keys", pool="keys") == 1
        assert value(samples, "asyncq_jobs_waiting_on_dependencies", pool="keys") == 1
        assert value(samples, "asyncq_jobs_throttled", pool="keys") == 0
        assert value(samples, "asyncq_jobs_waiting", pool="keys") == 2
        gate.open()
        assert [await first, await second, await after] == [1, 2, 3]


async def test_scrapes_from_another_thread_while_jobs_run() -> None:
    """start_http_server scrapes from a thread: that works while the pool is busy."""
    registry = CollectorRegistry()
    async with asyncq.Pool(workers=4) as pool:
        metrics.PrometheusCollector(pool, name="t", registry=registry)

        def scrape_repeatedly() -> list[float]:
            return [value(scrape(registry)[0], "asyncq_workers", pool="t") for _ in range(20)]

        scraper = asyncio.create_task(asyncio.to_thread(scrape_repeatedly))
        assert await pool.map(noop, range(3000)) == list(range(3000))
        assert await scraper == [4.0] * 20
    samples, _ = scrape(registry)
    assert value(samples, "asyncq_jobs_succeeded_total", pool="t") == 3000


def test_register_shares_one_collector_per_registry() -> None:
    """Two pools in one registry: each family once, a sample per pool; unregister undoes it."""
    registry = CollectorRegistry()
    first, second = asyncq.Pool(workers=1), asyncq.Pool(workers=2)
    collector = metrics.register(first, name="a", registry=registry)
    assert metrics.register(second, name="b", registry=registry) is collector
    text = generate_latest(registry).decode()
    assert text.count("# TYPE asyncq_workers gauge") == 1
    samples, _ = scrape(registry)
    assert value(samples, "asyncq_workers", pool="a") == 1
    assert value(samples, "asyncq_workers", pool="b") == 2
    with pytest.raises(ValueError, match="'a'"):
        metrics.register(asyncq.Pool(), name="a", registry=registry)
    assert metrics.unregister(first, registry=registry)
    assert collector.names == ["b"]
    assert metrics.unregister("b", registry=registry)
    assert not metrics.unregister(second, registry=registry)
    assert "asyncq_" not in generate_latest(registry).decode()


def test_register_defaults_to_the_global_registry() -> None:
    """Without a registry, register() and unregister() use prometheus_client.REGISTRY."""
    from prometheus_client import REGISTRY

    pool = asyncq.Pool(workers=5)
    metrics.register(pool, name="global-test")
    try:
        assert value(scrape(REGISTRY)[0], "asyncq_workers", pool="global-test") == 5
    finally:
        assert metrics.unregister(pool)
    assert ("asyncq_workers", frozenset({("pool", "global-test")})) not in scrape(REGISTRY)[0]


def test_collector_checks_its_arguments() -> None:
    """A non-pool, an empty name, or a clash with another collector are refused."""
    pool = asyncq.Pool()
    with pytest.raises(TypeError, match=r"asyncq\.Pool"):
        metrics.PrometheusCollector("pool")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        metrics.PrometheusCollector(pool, name="")
    registry = CollectorRegistry()
    metrics.PrometheusCollector(pool, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        metrics.PrometheusCollector(asyncq.Pool(), name="other", registry=registry)
    unregistered = metrics.PrometheusCollector(pool, name="x")
    assert unregistered.registry is None
    assert unregistered.names == ["x"]
    assert unregistered.remove(pool)
    assert not unregistered.remove("x")


def test_collected_pool_disappears() -> None:
    """Pools are held weakly: once garbage-collected, a pool is no longer exported."""
    registry = CollectorRegistry()
    keep = asyncq.Pool()
    collector = metrics.PrometheusCollector(keep, name="keep", registry=registry)
    collector.add(asyncq.Pool(), name="gone")
    gc.collect()
    assert collector.names == ["keep"]
    samples, _ = scrape(registry)
    assert {dict(labels)["pool"] for _, labels in samples} == {"keep"}


def test_missing_prometheus_client_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus-client, creating a collector raises ImportError with the fix."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'asyncq[metrics]'")):
        metrics.PrometheusCollector(asyncq.Pool())
    with pytest.raises(ImportError, match=re.escape("asyncq[metrics]")):
        metrics.register(asyncq.Pool())


def test_importing_asyncq_does_not_import_prometheus_client() -> None:
    """asyncq, asyncq.metrics and the command line import without prometheus-client."""
    code = ("import sys, asyncq, asyncq.metrics, asyncq.cli; "
            "assert 'prometheus_client' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


# -- the OpenTelemetry bridge shown in docs/metrics.md -----------------------------------


def otel_bridge() -> dict[str, Any]:
    """Execute the bridge code block of docs/metrics.md; return its namespace."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    blocks = re.findall(r"```python\n(# OpenTelemetry bridge.*?)```", text, re.S)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {"__name__": "otel_bridge"}
    exec(compile(blocks[0], "docs/metrics.md", "exec"), namespace)
    return namespace


async def test_documented_opentelemetry_bridge_reports_stats() -> None:
    """The docs' instrument_pool() feeds pool.stats() to an OpenTelemetry SDK reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    retry = asyncq.Retry(attempts=2, delay=0.0, jitter=False)
    try:
        async with asyncq.Pool(workers=2, retry=retry) as pool:
            otel_bridge()["instrument_pool"](pool, provider.get_meter("test"), name="otel")
            await pool.map(noop, range(32))
            with pytest.raises(ConnectionError):
                await (await pool.submit(refuse))
            data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    points = {
        (metric.name, tuple(sorted(point.attributes.items()))): point.value
        for resource in data.resource_metrics for scope in resource.scope_metrics
        for metric in scope.metrics for point in metric.data.data_points
    }
    otel = (("pool", "otel"),)
    assert points[("asyncq.jobs.submitted", otel)] == 33
    assert points[("asyncq.jobs.succeeded", otel)] == 32
    assert points[("asyncq.jobs.dead", otel)] == 1
    assert points[("asyncq.attempts.retried", otel)] == 1
    assert points[("asyncq.workers", otel)] == 2
    assert points[("asyncq.dead_letters", otel)] == 1
    median = points[("asyncq.run_time", (("pool", "otel"), ("quantile", "0.5")))]
    assert median >= 0
