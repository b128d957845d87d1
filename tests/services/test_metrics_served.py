"""gRPC calls served (count_served) and the EdgePort's histograms (Histograms) are counted
in plain tables and read when scraped: the page must say what prometheus-client's Counter
and Histogram would have said."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sipgrid.services import metrics
from sipgrid.services.metrics import SECONDS_BUCKETS, Histograms, count_served, exposition

# at a bound (counted in its bucket), between bounds, under the first, past the last
TIMES = [0.001, 0.0007, 0.0001, 0.3, 7.5, 5.0, 0.001]


def samples(text: str, method: str) -> dict[tuple[str, str, str], float]:
    """The two families' samples for ``method``: by sample name, code and le."""
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("sipgrid_grpc_calls", "sipgrid_grpc_seconds"):
            continue
        for s in family.samples:
            if s.labels.get("method") == method and not s.name.endswith("_created"):
                found[s.name, s.labels.get("code", ""), s.labels.get("le", "")] = s.value
    return found


def expected(method: str) -> dict[tuple[str, str, str], float]:
    """What prometheus-client's own metrics say for the same calls."""
    registry = CollectorRegistry()
    calls = Counter("sipgrid_grpc_calls", "", ["method", "code"], registry=registry)
    seconds = Histogram(
        "sipgrid_grpc_seconds", "", ["method"], buckets=SECONDS_BUCKETS, registry=registry
    )
    for taken in TIMES:
        calls.labels(method, "OK").inc()
        seconds.labels(method).observe(taken)
    calls.labels(method, "UNAVAILABLE").inc()
    seconds.labels(method).observe(0.02)
    return samples(generate_latest(registry).decode(), method)


def test_the_page_says_what_prometheus_clients_own_metrics_say() -> None:
    method = "Test/Served"
    for taken in TIMES:
        count_served(method, "OK", taken)
    count_served(method, "UNAVAILABLE", 0.02)
    page = samples(exposition().decode(), method)
    assert page == expected(method)
    assert page["sipgrid_grpc_calls_total", "OK", ""] == len(TIMES)
    assert page["sipgrid_grpc_seconds_bucket", "", "0.001"] == 4  # 0.0001, 0.0007, 0.001 twice
    assert page["sipgrid_grpc_seconds_bucket", "", "5.0"] == 7
    assert page["sipgrid_grpc_seconds_bucket", "", "+Inf"] == 8
    assert metrics.SERVED_CALLS[method, "UNAVAILABLE"] == 1


def test_an_unlabelled_histogram_says_what_prometheus_clients_says() -> None:
    """The EdgePort's processor latency and call setup times (Histograms)."""
    buckets = (0.05, 0.1, 1.0)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histograms = Histograms()
    ours.register(histograms)
    timings = histograms.add("sipgrid_test_seconds", "test", buckets)
    reference = Histogram("sipgrid_test_seconds", "test", buckets=buckets, registry=theirs)
    for taken in (0.05, 0.01, 0.3, 2.0, 0.1):
        timings.observe(taken)
        reference.observe(taken)

    def page(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples
            if not s.name.endswith("_created")
        }

    found = page(ours)
    assert found == page(theirs)
    assert found["sipgrid_test_seconds_bucket", "0.05"] == 2
    assert found["sipgrid_test_seconds_count", ""] == 5
