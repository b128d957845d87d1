"""The EdgePort's HTTP side for operators (aiohttp): ``/healthz`` (alive), ``/readyz``
(able to serve: listening, and the processor reachable) and ``/metrics`` (Prometheus).

The metrics are read from the core's counters when scraped: the SIP path pays nothing
per message beyond the counters it keeps anyway. With several worker processes on one port,
worker 0 serves the page, and asks the other workers for their figures when scraped: the
page sums them all (``metrics.merged``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..metrics import SECONDS_BUCKETS, Families, Histograms, merged

if TYPE_CHECKING:
    from .server import EdgePort

# core counters that are counted by a label: "request:INVITE", "response:2xx",
# "call:invite:2xx" (final answers to a dialog's first INVITE, and to BYEs)
LABELLED = {"request": "method", "response": "status_class", "call": "method,status_class"}


class EdgePortCollector(Collector):
    def __init__(self, edgeport: EdgePort) -> None:
        self._edgeport = edgeport

    def collect(self) -> Iterator[Metric]:
        edgeport = self._edgeport
        stats = edgeport.stats
        requests = CounterMetricFamily(
            "sipgrid_sip_requests", "SIP requests received, by method", labels=["method"]
        )
        responses = CounterMetricFamily(
            "sipgrid_sip_responses",
            "SIP responses received from next hops, by status class",
            labels=["status_class"],
        )
        events = CounterMetricFamily(
            "sipgrid_edgeport_events",
            "What the EdgePort did: received, retransmissions, malformed, rate_limited, "
            "timer_c, failovers, send_errors, ...",
            labels=["event"],
        )
        calls = CounterMetricFamily(
            "sipgrid_calls",
            "Final answers to calls (a dialog's first INVITE) and to hang-ups (BYE), "
            "by method and status class",
            labels=["method", "status_class"],
        )
        for key, count in stats.items():
            kind, _, value = key.partition(":")
            if kind == "request":
                requests.add_metric([value], count)
            elif kind == "response":
                responses.add_metric([value], count)
            elif kind == "call":
                method, _, status_class = value.partition(":")
                calls.add_metric([method.upper(), status_class], count)
            else:
                events.add_metric([key], count)
        yield requests
        yield responses
        yield events
        yield calls
        yield GaugeMetricFamily(
            "sipgrid_calls_in_progress",
            "Calls answered and not hung up yet, as this EdgePort saw them",
            value=edgeport.core.calls_in_progress if edgeport.core else 0,
        )
        yield GaugeMetricFamily(
            "sipgrid_dialogs_followed",
            "Dialogs whose in-dialog requests this EdgePort routes itself, as Connect let it",
            value=edgeport.core.dialogs_followed if edgeport.core else 0,
        )
        server_txs, client_txs = edgeport.core.transactions if edgeport.core else (0, 0)
        active = GaugeMetricFamily(
            "sipgrid_transactions_active", "Live SIP transactions", labels=["side"]
        )
        active.add_metric(["server"], server_txs)
        active.add_metric(["client"], client_txs)
        yield active
        yield GaugeMetricFamily(
            "sipgrid_connections_open",
            "Open TCP, TLS and WebSocket connections",
            value=edgeport.connection_count,
        )


class HttpEndpoint:
    def __init__(
        self, edgeport: EdgePort, host: str, port: int, ready: Callable[[], Awaitable[bool]]
    ) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.registry.register(EdgePortCollector(edgeport))
        # counted by compiled code, read when scraped (sipgrid.services.metrics.Timings)
        histograms = Histograms()
        self.registry.register(histograms)
        self.processor_latency = histograms.add(
            "sipgrid_processor_seconds",
            "Time the processor took to answer a message",
            SECONDS_BUCKETS,  # as the gRPC calls served
        )
        self.call_setup = histograms.add(
            "sipgrid_call_setup_seconds",
            "From a call's INVITE to its 2xx",
            (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0),
        )
        self._ready = ready
        self._runner: web.AppRunner | None = None
        # worker 0 of several: the other workers' families, as many as answered
        self.others: Callable[[], Awaitable[list[list[Metric]]]] | None = None
        self.workers = 1

    def families(self) -> list[Metric]:
        """This process's metric families: the EdgePort's and the process registry's."""
        return [*self.registry.collect(), *REGISTRY.collect()]

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if await self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: the processor cannot be reached\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        families = self.families()
        if self.others is not None:
            found = [families, *await self.others()]
            families = merged(found)
            families.append(
                GaugeMetricFamily(
                    "sipgrid_workers_reporting",
                    f"Worker processes whose figures this page sums, of {self.workers}",
                    value=len(found),
                )
            )
        body = generate_latest(Families(families))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
