"""Prometheus metrics for asyncq pools (optional: ``pip install 'asyncq[metrics]'``).

::

    from prometheus_client import start_http_server
    from asyncq import metrics

    async with asyncq.Pool(workers=8) as pool:
        metrics.register(pool, name="deploys")   # into prometheus_client.REGISTRY
        start_http_server(9100)                  # or your web framework's /metrics route
        ...

Nothing is counted on the pool's hot path: every scrape calls ``pool.stats()`` once per
exported pool and turns the snapshot into metric families, each sample labelled
``pool="<name>"`` (docs/metrics.md has the full table).

Counters (``pool.stats()`` field in brackets): ``asyncq_jobs_submitted_total``
(``submitted``), ``asyncq_jobs_succeeded_total``, ``asyncq_jobs_dead_total``,
``asyncq_jobs_cancelled_total``, ``asyncq_attempts_failed_total`` (``failed``: failed
attempts, retried or not) and ``asyncq_attempts_retried_total`` (``retried``).

Gauges: ``asyncq_jobs_waiting``, ``asyncq_jobs_delayed`` (start delay or retry backoff),
``asyncq_jobs_running``, ``asyncq_workers``, ``asyncq_dead_letters`` (letters held now),
``asyncq_keys_busy``, and three parts of ``waiting``: ``asyncq_jobs_queued_behind_keys``,
``asyncq_jobs_waiting_on_dependencies`` and ``asyncq_jobs_throttled``.

Latency: ``asyncq_queue_wait_seconds`` and ``asyncq_run_time_seconds`` with a ``quantile``
label, and ``asyncq_queue_wait_samples`` / ``asyncq_run_time_samples``, the number of
samples the percentiles rest on. ``Stats.lanes`` (waiting jobs per priority and group) is
not exported: a group may be any hashable, and one label value per tenant could grow
without bound.

The latency families are gauges with a ``quantile`` label (``"0.5"``, ``"0.95"``,
``"0.99"``), not a Prometheus summary or histogram: the pool keeps percentiles over a
sliding window of timed jobs (about one a millisecond, the newest 4096), not a running sum
and count, and not buckets. They can be graphed and alerted on as they are, but they cannot
be aggregated across pools or over time the way histogram buckets can. With no sample yet,
each quantile is NaN.

A scrape served from another thread (``start_http_server``) reads the counters without
stopping the pool: each number is exact, but two numbers may straddle a job's move from
one state to the next, so sums across families can be off by the jobs in flight in that
instant.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from asyncq._pool import Pool
from asyncq._stats import Latency, Stats

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["PrometheusCollector", "register", "unregister"]

INSTALL_HINT = (
    "asyncq.metrics needs the prometheus-client package, an optional extra: "
    "pip install 'asyncq[metrics]'"
)

#: Counters: family name (``_total`` is added to the sample), ``Stats`` field, help text.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("asyncq_jobs_submitted", "submitted", "Jobs admitted to the pool."),
    ("asyncq_jobs_succeeded", "succeeded", "Jobs that returned a result."),
    ("asyncq_jobs_dead", "dead", "Jobs that went to the dead letters."),
    ("asyncq_jobs_cancelled", "cancelled", "Jobs that ended cancelled."),
    ("asyncq_attempts_failed", "failed", "Attempts that raised or timed out, retried or not."),
    ("asyncq_attempts_retried", "retried", "Failed attempts scheduled to run again."),
)
#: Gauges: family name, ``Stats`` field, help text.
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("asyncq_jobs_waiting", "waiting", "Jobs admitted and waiting for a worker."),
    ("asyncq_jobs_delayed", "delayed", "Jobs on the timer: a start delay or a retry backoff."),
    ("asyncq_jobs_running", "running", "Jobs whose attempt is running on a worker."),
    ("asyncq_workers", "workers", "Worker coroutines of the pool."),
    ("asyncq_dead_letters", "dead_letters", "Dead letters held, not yet redriven or purged."),
    ("asyncq_keys_busy", "keys_busy", "Keys held by a job now."),
    ("asyncq_jobs_queued_behind_keys", "queued_behind_keys",
     "Waiting jobs whose key is busy (part of asyncq_jobs_waiting)."),
    ("asyncq_jobs_waiting_on_dependencies", "waiting_on_dependencies",
     "Waiting jobs whose dependencies have not all succeeded (part of asyncq_jobs_waiting)."),
    ("asyncq_jobs_throttled", "throttled",
     "Waiting jobs held back by a group or key rate limit (part of asyncq_jobs_waiting)."),
)
#: Latencies: family prefix, ``Stats`` field, what is timed.
LATENCIES: tuple[tuple[str, str, str], ...] = (
    ("asyncq_queue_wait", "queue_wait", "Seconds from admission to the first attempt's start"),
    ("asyncq_run_time", "run_time", "Seconds an attempt ran"),
)
QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


def require_prometheus() -> None:
    """Raise an ``ImportError`` saying how to install prometheus-client, if it is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


class PrometheusCollector:
    """A Prometheus custom collector exporting ``pool.stats()`` at every scrape.

    ``name`` becomes the ``pool`` label. With ``registry`` (a
    ``prometheus_client.CollectorRegistry``) the collector registers itself there; with
    ``None`` it is not registered (pass it to ``registry.register`` yourself, or use
    :func:`register`). More pools can share the collector through :meth:`add`, each under
    its own name, since one registry refuses two collectors of the same metric names.

    The collector holds its pools weakly: a pool that has been garbage-collected simply
    stops being exported. Raises ``ImportError`` when prometheus-client is not installed.
    """

    def __init__(
        self, pool: Pool, *, name: str = "default", registry: CollectorRegistry | None = None
    ) -> None:
        require_prometheus()
        self._lock = threading.Lock()
        self._pools: dict[str, weakref.ref[Pool]] = {}
        self.add(pool, name=name)
        self.registry = registry
        if registry is not None:
            registry.register(self)

    def __repr__(self) -> str:
        return f"<PrometheusCollector pools={self.names!r}>"

    @property
    def names(self) -> list[str]:
        """The names of the pools exported (live ones only)."""
        return [name for name, _ in self._live()]

    def add(self, pool: Pool, *, name: str) -> None:
        """Also export ``pool``, labelled ``pool=name`` (a name not used here yet)."""
        if not isinstance(pool, Pool):
            raise TypeError(f"pool must be an asyncq.Pool, got {type(pool).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        with self._lock:
            current = self._pools.get(name)
            if current is not None and current() is not None:
                raise ValueError(f"a pool named {name!r} is exported by this collector already")
            self._pools[name] = weakref.ref(pool)

    def remove(self, pool: Pool | str) -> bool:
        """Stop exporting ``pool`` (the pool or its name); False if it was not exported."""
        with self._lock:
            for name, ref in list(self._pools.items()):
                if name == pool or ref() is pool:
                    del self._pools[name]
                    return True
        return False

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families, with one sample set per live pool (called per scrape)."""
        return _families([(name, pool.stats()) for name, pool in self._live()])

    def describe(self) -> Iterator[Metric]:
        """Yield the families without samples, so a registry can check for name clashes."""
        return _families([])

    def _live(self) -> list[tuple[str, Pool]]:
        with self._lock:
            live = [(name, ref()) for name, ref in self._pools.items()]
            for name, pool in live:
                if pool is None:
                    del self._pools[name]
        return [(name, pool) for name, pool in live if pool is not None]


def _families(snapshots: Sequence[tuple[str, Stats]]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for family, field, text in COUNTERS:
        counter = CounterMetricFamily(family, text, labels=["pool"])
        for name, stats in snapshots:
            counter.add_metric([name], getattr(stats, field))
        yield counter
    for family, field, text in GAUGES:
        gauge = GaugeMetricFamily(family, text, labels=["pool"])
        for name, stats in snapshots:
            gauge.add_metric([name], getattr(stats, field))
        yield gauge
    for prefix, field, text in LATENCIES:
        quantiles = GaugeMetricFamily(
            f"{prefix}_seconds", f"{text}: percentiles over a sliding window of sampled "
            "jobs (not a summary; NaN before any sample).",
            labels=["pool", "quantile"], unit="seconds")
        samples = GaugeMetricFamily(
            f"{prefix}_samples", f"Samples behind {prefix}_seconds.", labels=["pool"])
        for name, stats in snapshots:
            latency: Latency = getattr(stats, field)
            for quantile, attribute in QUANTILES:
                value = getattr(latency, attribute) if latency.samples else math.nan
                quantiles.add_metric([name, quantile], value)
            samples.add_metric([name], latency.samples)
        yield quantiles
        yield samples


_shared: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusCollector] = (
    weakref.WeakKeyDictionary())
_shared_lock = threading.Lock()


def _registry_or_default(registry: CollectorRegistry | None) -> CollectorRegistry:
    require_prometheus()
    if registry is not None:
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def register(
    pool: Pool, *, name: str = "default", registry: CollectorRegistry | None = None
) -> PrometheusCollector:
    """Export ``pool`` into ``registry`` (default: ``prometheus_client.REGISTRY``).

    Pools registered into the same registry through this function share one collector, so
    each metric family appears once with a sample per pool; their names must differ.
    Returns that collector.
    """
    target = _registry_or_default(registry)
    with _shared_lock:
        collector = _shared.get(target)
        if collector is None:
            collector = PrometheusCollector(pool, name=name, registry=target)
            _shared[target] = collector
        else:
            collector.add(pool, name=name)
    return collector


def unregister(pool: Pool | str, *, registry: CollectorRegistry | None = None) -> bool:
    """Stop exporting a pool (or the pool of that name) that :func:`register` added.

    When the last pool leaves, the shared collector is unregistered from the registry.
    Returns False when the pool was not exported there.
    """
    target = _registry_or_default(registry)
    with _shared_lock:
        collector = _shared.get(target)
        if collector is None or not collector.remove(pool):
            return False
        if not collector.names:
            target.unregister(collector)
            del _shared[target]
    return True
