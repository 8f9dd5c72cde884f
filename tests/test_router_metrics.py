"""RouterMetrics: what a Prometheus scrape of one router reads, parsed back with prometheus_client."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fdrouter.router_metrics import InstanceRow, RouterMetrics

A, B = "http://10.0.0.1:8000", "http://10.0.0.2:8000"


def _samples(metrics: RouterMetrics) -> dict[tuple[str, frozenset], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _get(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_requests_are_counted_by_endpoint_status_and_instance():
    m = RouterMetrics(process_metrics=False)
    m.observe_request("/v1/chat/completions", 200, duration_secs=0.5, ttft_secs=0.1, instance=A)
    m.observe_request("/v1/chat/completions", 200, duration_secs=0.7, ttft_secs=0.2, instance=A)
    m.observe_request("/v1/chat/completions", 502, duration_secs=0.01, instance=B)
    m.observe_request("/v1/completions", 429, duration_secs=0.001)
    s = _samples(m)
    assert _get(s, "fdrouter_requests_total", endpoint="/v1/chat/completions", status="200", instance=A) == 2
    assert _get(s, "fdrouter_requests_total", endpoint="/v1/chat/completions", status="502", instance=B) == 1
    assert _get(s, "fdrouter_requests_total", endpoint="/v1/completions", status="429", instance="") == 1


def test_latency_and_time_to_first_token_land_in_their_buckets():
    m = RouterMetrics(process_metrics=False)
    m.observe_request("/v1/chat/completions", 200, duration_secs=0.5, ttft_secs=0.1, instance=A)
    m.observe_request("/v1/chat/completions", 200, duration_secs=45.0, ttft_secs=12.0, instance=A)
    m.observe_request("/v1/chat/completions", 502, duration_secs=0.003, instance=A)  # failed before a body: no TTFT
    s = _samples(m)
    ep = "/v1/chat/completions"
    assert _get(s, "fdrouter_request_duration_seconds_count", endpoint=ep) == 3
    assert _get(s, "fdrouter_request_duration_seconds_sum", endpoint=ep) == pytest.approx(45.503)
    assert _get(s, "fdrouter_request_duration_seconds_bucket", endpoint=ep, le="0.005") == 1
    assert _get(s, "fdrouter_request_duration_seconds_bucket", endpoint=ep, le="0.5") == 2
    assert _get(s, "fdrouter_request_duration_seconds_bucket", endpoint=ep, le="30.0") == 2
    assert _get(s, "fdrouter_request_duration_seconds_bucket", endpoint=ep, le="60.0") == 3
    assert _get(s, "fdrouter_time_to_first_token_seconds_count", endpoint=ep) == 2
    assert _get(s, "fdrouter_time_to_first_token_seconds_bucket", endpoint=ep, le="0.1") == 1
    assert _get(s, "fdrouter_time_to_first_token_seconds_bucket", endpoint=ep, le="10.0") == 1
    assert _get(s, "fdrouter_time_to_first_token_seconds_bucket", endpoint=ep, le="20.0") == 2


def test_retries_upstream_errors_and_rejections_are_counted_by_reason():
    m = RouterMetrics(process_metrics=False)
    m.observe_retry("connect")
    m.observe_retry("connect")
    m.observe_retry("status_503")
    m.observe_upstream_error(A, "timeout")
    m.observe_rejection("queue_full")
    s = _samples(m)
    assert _get(s, "fdrouter_retries_total", reason="connect") == 2
    assert _get(s, "fdrouter_retries_total", reason="status_503") == 1
    assert _get(s, "fdrouter_upstream_errors_total", instance=A, kind="timeout") == 1
    assert _get(s, "fdrouter_admission_rejected_total", reason="queue_full") == 1


def test_instance_and_admission_gauges_are_read_live_at_scrape_time():
    rows = [InstanceRow(A, "mixed", in_flight=3, in_flight_tokens=1200, healthy=True, circuit=0)]
    queue = [5, 2]
    m = RouterMetrics(instances=lambda: rows, admission=lambda: (queue[0], queue[1]), process_metrics=False)
    s = _samples(m)
    assert _get(s, "fdrouter_instance_in_flight_requests", instance=A, role="mixed") == 3
    assert _get(s, "fdrouter_instance_in_flight_tokens", instance=A, role="mixed") == 1200
    assert _get(s, "fdrouter_instance_healthy", instance=A, role="mixed") == 1
    assert _get(s, "fdrouter_instance_circuit_state", instance=A, role="mixed") == 0
    assert (_get(s, "fdrouter_admission_active"), _get(s, "fdrouter_admission_queued")) == (5, 2)

    # the next scrape sees the new state, with nothing pushed in between
    rows[:] = [InstanceRow(B, "decode", in_flight=0, in_flight_tokens=0, healthy=False, circuit=2)]
    queue[:] = [0, 0]
    s = _samples(m)
    assert _get(s, "fdrouter_instance_in_flight_requests", instance=A, role="mixed") is None
    assert _get(s, "fdrouter_instance_healthy", instance=B, role="decode") == 0
    assert _get(s, "fdrouter_instance_circuit_state", instance=B, role="decode") == 2
    assert _get(s, "fdrouter_admission_queued") == 0


def test_forgetting_an_instance_drops_its_series_and_keeps_the_others():
    m = RouterMetrics(process_metrics=False)
    m.observe_request("/v1/completions", 200, duration_secs=0.1, instance=A)
    m.observe_request("/v1/completions", 200, duration_secs=0.1, instance=B)
    m.observe_upstream_error(A, "connect")
    m.forget_instance(A)
    s = _samples(m)
    assert _get(s, "fdrouter_requests_total", endpoint="/v1/completions", status="200", instance=A) is None
    assert _get(s, "fdrouter_upstream_errors_total", instance=A, kind="connect") is None
    assert _get(s, "fdrouter_requests_total", endpoint="/v1/completions", status="200", instance=B) == 1
    # an instance that registers again starts from zero, without errors
    m.observe_request("/v1/completions", 200, duration_secs=0.1, instance=A)
    assert _get(_samples(m), "fdrouter_requests_total", endpoint="/v1/completions", status="200", instance=A) == 1


def test_two_routers_in_one_process_keep_separate_metrics():
    first, second = RouterMetrics(), RouterMetrics()  # would raise "Duplicated timeseries" on a shared registry
    first.observe_request("/v1/completions", 200, duration_secs=0.1, instance=A)
    assert _get(_samples(first), "fdrouter_requests_total", endpoint="/v1/completions", status="200", instance=A) == 1
    assert _get(_samples(second), "fdrouter_requests_total", endpoint="/v1/completions", status="200",
                instance=A) is None


def test_process_metrics_are_included_by_default():
    names = {name for name, _ in _samples(RouterMetrics())}
    assert "python_info" in names


def test_sources_bound_after_construction_are_read_at_the_next_scrape():
    m = RouterMetrics(process_metrics=False)
    assert _get(_samples(m), "fdrouter_admission_active") is None  # no source: no gauge
    m.bind(admission=lambda: (1, 4),
           instances=lambda: [InstanceRow(A, "prefill", in_flight=2, in_flight_tokens=9, healthy=True, circuit=1)])
    s = _samples(m)
    assert (_get(s, "fdrouter_admission_active"), _get(s, "fdrouter_admission_queued")) == (1, 4)
    assert _get(s, "fdrouter_instance_circuit_state", instance=A, role="prefill") == 1


async def test_live_metrics_count_requests_by_endpoint_status_and_instance(cluster):
    c = await cluster(mixed=1)
    assert (await c.chat())[0] == 200
    async with c.http.post(c.url + "/v1/chat/completions", data=b"{oops",
                           headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    async with c.http.get(c.url + "/metrics") as resp:
        assert resp.status == 200
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    counts = {(s.labels["endpoint"], s.labels["status"], s.labels["instance"]): s.value
              for s in families["fdrouter_requests"].samples if s.name == "fdrouter_requests_total"}
    assert counts[("/v1/chat/completions", "200", c.backends[0].url)] == 1
    assert counts[("/v1/chat/completions", "400", "")] == 1
    ttft = [s for s in families["fdrouter_time_to_first_token_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in ttft) == 1  # only the answered request had a first byte
    in_flight = [s for s in families["fdrouter_instance_in_flight_requests"].samples]
    assert [s.value for s in in_flight] == [0.0]
