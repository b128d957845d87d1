"""Several workers on one port: worker 0's metrics page sums the others' figures
(sipgrid.services.metrics.merged), which reach it as one datagram each (to_wire)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from sipgrid.services.metrics import Families, from_wire, merged, to_wire


def worker(
    requests: dict[str, int], in_progress: int, started: float, latencies: list[float]
) -> list[Metric]:
    """One worker's families, from prometheus-client's own metrics."""
    registry = CollectorRegistry()
    counted = Counter("sipgrid_sip_requests", "requests", ["method"], registry=registry)
    for method, count in requests.items():
        counted.labels(method).inc(count)
    Gauge("sipgrid_calls_in_progress", "calls up", registry=registry).set(in_progress)
    Gauge("process_start_time_seconds", "start", registry=registry).set(started)
    latency = Histogram(
        "sipgrid_processor_seconds", "latency", buckets=(0.01, 0.1), registry=registry
    )
    for seconds in latencies:
        latency.observe(seconds)
    return list(registry.collect())


def values(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_counters_histograms_and_held_gauges_add_up_and_the_rest_is_worker_0s() -> None:
    first = worker({"INVITE": 3, "REGISTER": 5}, 2, 1000.0, [0.005, 0.05])
    second = worker({"INVITE": 4, "BYE": 1}, 1, 900.0, [0.5])
    page = values(merged([first, second]))
    assert page["sipgrid_sip_requests_total", (("method", "INVITE"),)] == 7
    assert page["sipgrid_sip_requests_total", (("method", "REGISTER"),)] == 5  # worker 0's alone
    assert page["sipgrid_sip_requests_total", (("method", "BYE"),)] == 1  # worker 1's alone
    assert page["sipgrid_calls_in_progress", ()] == 3  # held by each: added
    assert page["process_start_time_seconds", ()] == 1000.0  # not added: worker 0's
    assert page["sipgrid_processor_seconds_count", ()] == 3
    assert page["sipgrid_processor_seconds_bucket", (("le", "0.01"),)] == 1
    assert page["sipgrid_processor_seconds_bucket", (("le", "0.1"),)] == 2
    assert page["sipgrid_processor_seconds_bucket", (("le", "+Inf"),)] == 3
    assert page["sipgrid_processor_seconds_sum", ()] == pytest.approx(0.555)
    created = {k: v for k, v in values(first).items() if k[0].endswith("_created")}
    later = {k: v for k, v in values(second).items() if k[0].endswith("_created")}
    assert created and all(page[k] == min(v, later.get(k, v)) for k, v in created.items())


def test_a_workers_figures_cross_as_one_datagram_and_the_page_reads_as_prometheus_text() -> None:
    first = worker({"INVITE": 3}, 2, 1000.0, [0.005])
    second = worker({"INVITE": 4}, 1, 900.0, [0.05])
    wired = to_wire(second)
    assert len(wired) < 65_000
    assert values(from_wire(wired)) == values(second)
    text = generate_latest(Families(merged([first, from_wire(wired)]))).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["sipgrid_sip_requests"].samples[0].value == 7
    assert parsed["sipgrid_processor_seconds"].type == "histogram"


def test_what_is_not_a_workers_figures_is_refused() -> None:
    for garbage in (b"", b"not zlib", to_wire([])[:-3]):
        with pytest.raises(ValueError, match="not a worker's metrics"):
            from_wire(garbage)
    assert from_wire(to_wire([])) == []
