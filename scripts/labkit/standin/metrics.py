"""The Prometheus text the stand-in serves on /metrics, shaped as vLLM 0.32's (names, types, HELP, labels, buckets).

Stdlib only. Like vLLM's output: labels sorted by name, counters as ``NAME_total`` with a separate
``NAME_created`` gauge family, histograms with every bucket then ``_count`` and ``_sum``, floats as Go prints them.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field

# vllm/v1/metrics/buckets.py (0.32.0)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
# prometheus_fastapi_instrumentator as vLLM sets it up: these paths are not counted in http_requests_total.
UNCOUNTED_HANDLERS = frozenset({"/metrics", "/health", "/load", "/ping", "/version", "/server_info"})

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens"
GENERATION_TOKENS = "vllm:generation_tokens"
SUCCESS = "vllm:request_success"
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
E2E = "vllm:e2e_request_latency_seconds"
HTTP = "http_requests"


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # gauge | counter | histogram
    help: str
    labels: tuple[str, ...] = ()  # beyond model_name and engine
    buckets: tuple[float, ...] = ()
    engine_labels: bool = True


FAMILIES = (
    Family(RUNNING, "gauge", "Number of requests in model execution batches."),
    Family(WAITING, "gauge", "Number of requests waiting to be processed."),
    Family(KV_CACHE, "gauge", "KV-cache usage. 1 means 100 percent usage."),
    Family(PROMPT_TOKENS, "counter", "Number of prefill tokens processed."),
    Family(GENERATION_TOKENS, "counter", "Number of generation tokens processed."),
    Family(SUCCESS, "counter", "Count of successfully processed requests.", ("finished_reason",)),
    Family(TTFT, "histogram", "Histogram of time to first token in seconds.", buckets=TTFT_BUCKETS),
    Family(ITL, "histogram", "Histogram of inter-token latency in seconds.", buckets=ITL_BUCKETS),
    Family(E2E, "histogram", "Histogram of e2e request latency in seconds.", buckets=LATENCY_BUCKETS),
    Family(
        HTTP,
        "counter",
        "Total number of requests by method, status and handler.",
        ("handler", "method", "status"),
        engine_labels=False,
    ),
)


@dataclass
class Series:
    """One label set's value: a number, or a histogram's per-bucket counts (last one is +Inf) and sum."""

    created: float
    value: float = 0.0
    counts: list[int] = field(default_factory=list)


class Metrics:
    """Thread-safe values for FAMILIES; ``render`` gives the exposition text."""

    def __init__(self, model_name: str, engine: str = "0") -> None:
        self._lock = threading.Lock()
        self._base = {"model_name": model_name, "engine": engine}
        self._families = {f.name: f for f in FAMILIES}
        self._series: dict[str, dict[tuple[str, ...], Series]] = {f.name: {} for f in FAMILIES}
        for family in FAMILIES:
            if family.engine_labels and family.labels != ("finished_reason",):
                self._get(family, ())
        for reason in FINISH_REASONS:
            self._get(self._families[SUCCESS], (reason,))

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._get(self._families[name], ()).value = value

    def inc(self, name: str, by: float = 1.0, labels: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._get(self._families[name], labels).value += by

    def observe(self, name: str, value: float) -> None:
        family = self._families[name]
        with self._lock:
            series = self._get(family, ())
            series.counts[bisect.bisect_left(family.buckets, value)] += 1
            series.value += value

    def count_http(self, handler: str, method: str, status: int) -> None:
        """One API answer, as prometheus_fastapi_instrumentator counts it (status grouped as 2xx, 4xx, ...)."""
        if handler not in UNCOUNTED_HANDLERS:
            self.inc(HTTP, labels=(handler, method, f"{status // 100}xx"))

    def value(self, name: str, labels: tuple[str, ...] = ()) -> float:
        with self._lock:
            series = self._series[name].get(labels)
            return 0.0 if series is None else series.value

    def render(self) -> str:
        with self._lock:
            return "".join(self._render_family(f) for f in FAMILIES)

    def _get(self, family: Family, labels: tuple[str, ...]) -> Series:
        series = self._series[family.name].get(labels)
        if series is None:
            series = Series(created=time.time(), counts=[0] * (len(family.buckets) + 1))
            self._series[family.name][labels] = series
        return series

    def _labels(self, family: Family, values: tuple[str, ...]) -> dict[str, str]:
        labels = dict(self._base) if family.engine_labels else {}
        labels.update(zip(family.labels, values, strict=True))
        return labels

    def _render_family(self, family: Family) -> str:
        series = self._series[family.name]
        name = f"{family.name}_total" if family.kind == "counter" else family.name
        out = [f"# HELP {name} {family.help}\n", f"# TYPE {name} {family.kind}\n"]
        for values, s in series.items():
            labels = self._labels(family, values)
            if family.kind == "histogram":
                out.extend(_histogram_lines(name, labels, family.buckets, s))
            else:
                out.append(_line(name, labels, s.value))
        if family.kind in ("counter", "histogram"):
            out += [f"# HELP {family.name}_created {family.help}\n", f"# TYPE {family.name}_created gauge\n"]
            out += [_line(f"{family.name}_created", self._labels(family, v), s.created) for v, s in series.items()]
        return "".join(out)


def _histogram_lines(name: str, labels: dict[str, str], bounds: tuple[float, ...], s: Series) -> list[str]:
    lines, cumulative = [], 0
    for bound, count in zip((*bounds, math.inf), s.counts, strict=True):
        cumulative += count
        lines.append(_line(f"{name}_bucket", {**labels, "le": go_float(bound)}, cumulative))
    lines.append(_line(f"{name}_count", labels, cumulative))
    lines.append(_line(f"{name}_sum", labels, s.value))
    return lines


def _line(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_escape(labels[k])}"' for k in sorted(labels))
    return f"{name}{{{inner}}} {go_float(value)}\n" if inner else f"{name} {go_float(value)}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def go_float(value: float) -> str:
    """A float as prometheus_client writes it (Go's formatting: ``1.0``, ``+Inf``, ``1.795e+09``)."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text
