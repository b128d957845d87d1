"""Prometheus metrics every service shares (prometheus-client's process registry): gRPC
calls served by method and code, their latency, registrations, database and Redis errors,
the process's own CPU and memory. ``sipgrid serve X`` serves them on METRICS_BIND_ADDR
(host:port, off when unset); the EdgePort adds them to its own /metrics, so
``sipgrid run`` shows everything on one page. With several worker processes, worker 0's
page adds up every worker's figures (``merged``)."""

from __future__ import annotations

import bisect
import itertools
import json
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# gRPC calls served (each call on one of sipgrid's streams counts as one): by method and
# status code, and the time to answer them by method. Counted in plain tables by compiled
# code and read when scraped (Served), as the registrations are: a prometheus Counter's
# inc() and a Histogram's observe() are a few interpreted calls and a lock each, three
# times a call in the distributed wiring (bench/README.md, session 36).
SERVED_CALLS: Final[dict[tuple[str, str], int]] = {}
SECONDS_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)


class Timings:
    """A histogram of durations, counted by compiled code and read when scraped: a
    prometheus Histogram's observe() is a few interpreted calls and a lock (in the
    EdgePort, once for every message its processor answers)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        # the durations in each bucket, not cumulative (the last: past the largest bound)
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # the first bound at or above it: a bucket counts the durations up to its bound
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """Its samples, under ``labels``: each bucket's "le" as prometheus-client writes it."""
        bounds = [*map(repr, self.buckets), "+Inf"]
        cumulative = list(itertools.accumulate(self.counts))
        family.add_metric(labels, list(zip(bounds, cumulative, strict=True)), self.total)


class Histograms(Collector):
    """Unlabelled Timings, each its own family."""

    def __init__(self) -> None:
        self._found: list[tuple[str, str, Timings]] = []

    def add(self, name: str, documentation: str, buckets: tuple[float, ...]) -> Timings:
        timings = Timings(buckets)
        self._found.append((name, documentation, timings))
        return timings

    def collect(self) -> list[Metric]:
        families: list[Metric] = []
        for name, documentation, timings in self._found:
            family = HistogramMetricFamily(name, documentation)
            timings.add_to(family, [])
            families.append(family)
        return families


# by method
SERVED_SECONDS: Final[dict[str, Timings]] = {}
# REGISTERs answered by Connect's registrar, by result (bound, removed, challenged,
# refused): counted in a plain dict by the registrar, which is compiled, and read when
# scraped (Registrations). A prometheus Counter's inc() is a few interpreted calls and a
# lock, twice a REGISTER exchange.
REGISTRATION_RESULTS: Final[dict[str, int]] = {}
DATABASE_ERRORS: Final = Counter("sipgrid_database_errors", "Database operations that failed")
REDIS_ERRORS: Final = Counter(
    "sipgrid_redis_errors", "Redis commands that failed (then tried again)"
)

HEALTH: Final = "/grpc.health.v1.Health/"


def count_served(method: str, code: str, seconds: float) -> None:
    """One gRPC call (or message of the processor stream) served: counted and timed."""
    key = (method, code)
    SERVED_CALLS[key] = SERVED_CALLS.get(key, 0) + 1
    timings = SERVED_SECONDS.get(method)
    if timings is None:
        timings = SERVED_SECONDS[method] = Timings(SECONDS_BUCKETS)
    timings.observe(seconds)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary call a gRPC server answers (health checks aside)."""

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or method.startswith(HEALTH):
            return handler
        inner = handler.unary_unary
        name = method.rsplit(".", 1)[-1]  # Service/Method, without the package

        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                found = context.code()
                code = found.name if isinstance(found, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                count_served(name, code, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class Gauges(Collector):
    """Gauges read when scraped from callables (bindings in a Location, say)."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def add(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (documentation, read)

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily(name, documentation, value=read())
            for name, (documentation, read) in self._gauges.items()
        ]


class Registrations(Collector):
    def collect(self) -> list[Metric]:
        family = CounterMetricFamily(
            "sipgrid_registrations",
            "REGISTERs answered by Connect's registrar: bound, removed, challenged, refused",
            labels=["result"],
        )
        for result, count in sorted(REGISTRATION_RESULTS.items()):
            family.add_metric([result], count)
        return [family]


class Served(Collector):
    def collect(self) -> list[Metric]:
        calls = CounterMetricFamily(
            "sipgrid_grpc_calls",
            "gRPC calls served, by method and status code",
            labels=["method", "code"],
        )
        for (method, code), count in list(SERVED_CALLS.items()):
            calls.add_metric([method, code], count)
        seconds = HistogramMetricFamily(
            "sipgrid_grpc_seconds", "Time to answer a gRPC call, by method", labels=["method"]
        )
        for method, timings in list(SERVED_SECONDS.items()):
            timings.add_to(seconds, [method])
        return [calls, seconds]


GAUGES: Final = Gauges()
REGISTRY.register(GAUGES)
REGISTRY.register(Registrations())
REGISTRY.register(Served())


def exposition() -> bytes:
    return generate_latest(REGISTRY)


# -- several worker processes on one port (SIPGRID_WORKERS): worker 0's page sums them all

# Gauges of what each worker holds, which add up over the workers. Any other gauge (a
# start time, a descriptor limit, the bindings of the one shared Location) is worker 0's.
SUMMED_GAUGES: Final = frozenset(
    {
        "sipgrid_calls_in_progress",
        "sipgrid_transactions_active",
        "sipgrid_connections_open",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
    }
)
_ADDED: Final = frozenset({"counter", "histogram", "summary"})


class Families(Collector):
    """Metric families already collected, as ``generate_latest`` takes a registry."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def to_wire(families: Iterable[Metric]) -> bytes:
    """A worker's metric families as it hands them to worker 0: JSON, compressed (a
    hand-off is one datagram)."""
    listed = [
        [f.name, f.documentation, f.type, f.unit, [[s.name, s.labels, s.value] for s in f.samples]]
        for f in families
    ]
    return zlib.compress(json.dumps(listed, separators=(",", ":")).encode(), 6)


def from_wire(data: bytes) -> list[Metric]:
    """What ``to_wire`` wrote; ValueError when it is not that."""
    try:
        listed = json.loads(zlib.decompress(data))
        families = []
        for name, documentation, kind, unit, samples in listed:
            family = Metric(name, documentation, kind, unit)
            for sample, labels, value in samples:
                family.add_sample(sample, labels, float(value))
            families.append(family)
    except (zlib.error, TypeError, ValueError) as error:
        raise ValueError(f"not a worker's metrics: {error}") from None
    return families


def merged(workers: list[list[Metric]]) -> list[Metric]:
    """One page of several workers' families (worker 0's first): counters, histograms
    and the gauges in SUMMED_GAUGES are added up, a ``_created`` time is the earliest,
    and any other gauge is the first worker's that has it."""
    # each family's samples by name and labels: [name, labels, value], in first-seen order
    pages: dict[str, tuple[Metric, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]]] = {}
    for found in workers:
        for family in found:
            if family.name not in pages:
                first = Metric(family.name, family.documentation, family.type, family.unit)
                pages[family.name] = (first, {})
            table = pages[family.name][1]
            added = family.type in _ADDED or family.name in SUMMED_GAUGES
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                have = table.get(key)
                if have is None:
                    table[key] = [sample.name, sample.labels, sample.value]
                elif sample.name.endswith("_created"):
                    have[2] = min(have[2], sample.value)
                elif added:
                    have[2] += sample.value
    for family, table in pages.values():
        for sample_name, labels, value in table.values():
            family.add_sample(sample_name, labels, value)
    return [family for family, _ in pages.values()]


async def serve_metrics(bind_addr: str) -> Any:
    """/metrics (and /healthz) over HTTP on ``host:port``; returns aiohttp's runner."""
    from aiohttp import web  # only the services that serve metrics pay for aiohttp

    async def metrics(request: Any) -> Any:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: Any) -> Any:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    host, _, port = bind_addr.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port)).start()
    return runner
