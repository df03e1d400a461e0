"""vLLM metrics: parsing real exposition text, deltas over a window, quantiles from buckets."""

import pytest

from fleetctl.core.metrics import (
    Histogram,
    MetricsError,
    WindowFigures,
    in_flight,
    parse_metrics,
    window,
)

TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} @stop@
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 10.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 0.0
vllm:request_success_total{engine="0",finished_reason="error",model_name="m"} @error@
# HELP vllm:request_success_created Count of successfully processed requests.
# TYPE vllm:request_success_created gauge
vllm:request_success_created{engine="0",finished_reason="stop",model_name="m"} 1.7e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} @b1@
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="m"} @b2@
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} @b3@
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} @b3@
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 12.5
# HELP http_requests_total Total number of requests by method, status and handler.
# TYPE http_requests_total counter
http_requests_total{handler="/metrics",method="GET",status="2xx"} 5.0
http_requests_total{handler="/v1/completions",method="POST",status="5xx"} @http5xx@
http_requests_total{handler="/v1/completions",method="POST",status="2xx"} 100.0
"""


def text(**values):
    out = TEXT
    for key, value in {"stop": 90, "error": 0, "b1": 50, "b2": 90, "b3": 100, "http5xx": 0, **values}.items():
        out = out.replace(f"@{key}@", str(value))
    return out


def test_parse_gauges_counters_and_histograms():
    s = parse_metrics(text())
    assert in_flight(s) == (3.0, 1.0)
    assert s.gauge("vllm:kv_cache_usage_perc") == 0.25
    assert s.counter("vllm:request_success_total") == 100.0
    assert s.counter("vllm:request_success_total", "length") == 10.0
    ttft = s.histograms["vllm:time_to_first_token_seconds"]
    assert ttft.buckets == ((0.1, 50.0), (0.5, 90.0), (float("inf"), 100.0)) and ttft.count == 100.0
    assert s.counter("http_requests_total", "2xx") == 100.0  # /v1/ handlers only, /metrics not counted


def test_window_uses_deltas_not_lifetime_totals():
    before = parse_metrics(text(stop=90, error=0, b1=50, b2=90, b3=100))
    after = parse_metrics(text(stop=170, error=20, b1=50, b2=150, b3=200))
    w = window(before, after)
    assert (w.finished, w.errors) == (100.0, 20.0)
    assert w.error_rate == pytest.approx(0.2)
    # 100 new requests: 0 under 0.1 s, 60 under 0.5 s, 40 above: p95 falls in the +Inf bucket → its lower bound
    assert w.ttft.count == 100 and w.ttft_p95() == pytest.approx(0.5)


def test_window_after_a_restart_counts_from_zero():
    before = parse_metrics(text(stop=900, b1=500, b2=900, b3=1000))
    after = parse_metrics(text(stop=5, error=1, b1=2, b2=6, b3=6))
    w = window(before, after)
    assert (w.finished, w.errors) == (16.0, 1.0) and w.ttft.count == 6


def test_quantile_interpolates_inside_a_bucket():
    h = Histogram(((0.1, 0.0), (0.2, 100.0), (float("inf"), 100.0)), 100.0, 15.0)
    assert h.quantile(0.5) == pytest.approx(0.15)
    assert h.quantile(0.95) == pytest.approx(0.195)
    assert Histogram((), 0.0, 0.0).quantile(0.95) is None


def test_figures_add_up_across_hosts():
    a = WindowFigures(10, 1, Histogram(((0.1, 5.0), (float("inf"), 10.0)), 10, 1))
    b = WindowFigures(30, 0, Histogram(((0.1, 30.0), (float("inf"), 30.0)), 30, 1))
    total = a.plus(b)
    assert (total.finished, total.errors, total.error_rate) == (40, 1, 0.025)
    assert total.ttft.buckets == ((0.1, 35.0), (float("inf"), 40.0))
    assert WindowFigures().error_rate is None


def test_no_vllm_metrics_means_nothing_in_flight():
    assert in_flight(parse_metrics("# TYPE up gauge\nup 1\n")) == (0.0, 0.0)


def test_garbage_is_an_error():
    with pytest.raises(MetricsError):
        parse_metrics("vllm:num_requests_running{engine=0 3\n")


def test_api_5xx_and_engine_errors_are_two_rates_never_summed():
    before = parse_metrics(text(stop=90, http5xx=2))
    after = parse_metrics(text(stop=120, error=3, http5xx=9))
    w = window(before, after)
    assert (w.finished, w.errors, w.answers, w.answers_5xx) == (33.0, 3.0, 7.0, 7.0)
    assert w.error_rate == 1.0  # every API answer in the window was a 5xx
    calm = window(before, parse_metrics(text(stop=120, error=3, http5xx=2)))
    assert calm.error_rate == pytest.approx(3 / 33)  # engine errors only; no 5xx: nothing counted twice
