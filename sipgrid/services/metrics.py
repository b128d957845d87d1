"""Prometheus metrics every service shares (prometheus-client's process registry): gRPC
calls served by method and code, their latency, registrations, database and Redis errors,
the process's own CPU and memory. ``sipgrid serve X`` serves them on METRICS_BIND_ADDR
(host:port, off when unset); the EdgePort adds them to its own /metrics, so
``sipgrid run`` shows everything on one page."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GRPC_CALLS = Counter(
    "sipgrid_grpc_calls", "gRPC calls served, by method and status code", ["method", "code"]
)
GRPC_SECONDS = Histogram(
    "sipgrid_grpc_seconds",
    "Time to answer a gRPC call, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)
# REGISTERs answered by Connect's registrar, by result (bound, removed, challenged,
# refused): counted in a plain dict by the registrar, which is compiled, and read when
# scraped (Registrations). A prometheus Counter's inc() is a few interpreted calls and a
# lock, twice a REGISTER exchange.
REGISTRATION_RESULTS: dict[str, int] = {}
DATABASE_ERRORS = Counter("sipgrid_database_errors", "Database operations that failed")
REDIS_ERRORS = Counter("sipgrid_redis_errors", "Redis commands that failed (then tried again)")

HEALTH = "/grpc.health.v1.Health/"


def count_served(method: str, code: str, seconds: float) -> None:
    """One gRPC call (or message of the processor stream) served: counted and timed."""
    _calls(method, code).inc()
    _seconds(method).observe(seconds)


# a metric's labelled child looked up once, not at every call (a few methods and codes)
@functools.cache
def _calls(method: str, code: str) -> Any:
    return GRPC_CALLS.labels(method, code)


@functools.cache
def _seconds(method: str) -> Any:
    return GRPC_SECONDS.labels(method)


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


GAUGES = Gauges()
REGISTRY.register(GAUGES)
REGISTRY.register(Registrations())


def exposition() -> bytes:
    return generate_latest(REGISTRY)


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
