"""vLLM's Prometheus metrics as fleetctl reads them: gauges for drain, counter and histogram deltas for gates.

Parsing uses prometheus_client's parser (imported on first use); everything else is arithmetic on plain data.
Samples are summed over label sets (engines, models) except the labels a caller asks to keep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
SUCCESS = "vllm:request_success_total"
TTFT = "vllm:time_to_first_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
HTTP = "http_requests_total"  # prometheus_fastapi_instrumentator, served by vLLM's API server
# The families fleetctl reads (by name prefix: a counter's samples end in _total and _created); the parser sees
# only their lines. A real vLLM page has dozens more, and prometheus_client's parser costs per line: a drain polls
# every 0.1 s, a bake samples every host every interval.
READ = (RUNNING, WAITING, KV_CACHE, "vllm:request_success", TTFT, E2E, "http_requests")
IN_FLIGHT = (RUNNING, WAITING)
_SAMPLE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?[ \t]+\S")


class MetricsError(ValueError):
    """Text that is not Prometheus exposition format."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (``inf`` included), plus count and sum."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    total: float

    def minus(self, earlier: Histogram) -> Histogram:
        before = dict(earlier.buckets)
        return Histogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.count - earlier.count,
            self.total - earlier.total,
        )

    def plus(self, other: Histogram) -> Histogram:
        theirs = dict(other.buckets)
        bounds = sorted(set(dict(self.buckets)) | set(theirs))
        mine = dict(self.buckets)
        return Histogram(
            tuple((le, mine.get(le, 0.0) + theirs.get(le, 0.0)) for le in bounds),
            self.count + other.count,
            self.total + other.total,
        )

    def quantile(self, q: float) -> float | None:
        """The q-quantile by linear interpolation inside the bucket (as PromQL's histogram_quantile)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower_bound
                width = cumulative - lower_count
                fraction = 0.0 if width <= 0 else (rank - lower_count) / width
                return lower_bound + (le - lower_bound) * fraction
            lower_bound, lower_count = le, cumulative
        return lower_bound


@dataclass(frozen=True)
class MetricsSample:
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[tuple[str, str], float] = field(default_factory=dict)  # (name, finished_reason or "")
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def gauge(self, name: str) -> float | None:
        return self.gauges.get(name)

    def counter(self, name: str, reason: str = "") -> float:
        if reason:
            return self.counters.get((name, reason), 0.0)
        return sum(v for (n, _), v in self.counters.items() if n == name)


def relevant(text: str, families: tuple[str, ...] = READ) -> str:
    """The lines of ``families`` (their samples, HELP and TYPE) for the parser. Every other line must still look
    like a sample or a comment: a page that is not Prometheus text is a MetricsError, as the parser would say."""
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            words = line.split(None, 3)
            if len(words) < 3 or words[1] not in ("HELP", "TYPE") or words[2].startswith(families):
                kept.append(line)
        elif line.startswith(families):
            kept.append(line)
        elif not _SAMPLE.match(line):
            raise MetricsError(f"not Prometheus text: line {number}: {line[:60]!r}")
    return "\n".join(kept) + "\n"


def parse_metrics(text: str, families: tuple[str, ...] = READ) -> MetricsSample:
    """Gauges, counters (split by ``finished_reason``) and histograms of ``families`` (every one fleetctl reads)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = relevant(text, families)

    gauges: dict[str, float] = {}
    counters: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[float, float]] = {}
    totals: dict[str, dict[str, float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name.startswith("vllm:"):
                for s in family.samples:
                    _add_sample(family.type, s.name, s.labels, s.value, gauges, counters, buckets, totals)
            elif family.name == "http_requests":
                for s in family.samples:
                    _add_http(s.name, s.labels, s.value, counters)
    except MetricsError:
        raise
    except (ValueError, KeyError, IndexError, TypeError) as e:  # the parser's own ways of saying "not Prometheus"
        raise MetricsError(f"not Prometheus text: {type(e).__name__}: {e}") from e
    histograms = {
        name: Histogram(
            tuple(sorted(b.items())), totals.get(name, {}).get("count", 0.0), totals.get(name, {}).get("sum", 0.0)
        )
        for name, b in buckets.items()
    }
    return MetricsSample(gauges, counters, histograms)


def _add_sample(
    kind: str,
    name: str,
    labels: dict[str, str],
    value: float,
    gauges: dict[str, float],
    counters: dict[tuple[str, str], float],
    buckets: dict[str, dict[float, float]],
    totals: dict[str, dict[str, float]],
) -> None:
    if kind == "gauge":
        gauges[name] = gauges.get(name, 0.0) + value
    elif kind == "counter" and name.endswith("_total"):
        key = (name, labels.get("finished_reason", ""))
        counters[key] = counters.get(key, 0.0) + value
    elif kind == "histogram":
        base, _, part = name.rpartition("_")
        if part == "bucket":
            if "le" not in labels:
                raise MetricsError(f"{name} has no le label")
            le = float(labels["le"])
            into = buckets.setdefault(base, {})
            into[le] = into.get(le, 0.0) + value
        elif part in ("count", "sum"):
            into_totals = totals.setdefault(base, {})
            into_totals[part] = into_totals.get(part, 0.0) + value


def _add_http(name: str, labels: dict[str, str], value: float, counters: dict[tuple[str, str], float]) -> None:
    """Count API answers by status class, for the OpenAI endpoints only (not /metrics or /health)."""
    if name == HTTP and labels.get("handler", "").startswith("/v1/"):
        key = (HTTP, labels.get("status", ""))
        counters[key] = counters.get(key, 0.0) + value


@dataclass(frozen=True)
class WindowFigures:
    """What happened on some hosts between two samples.

    Two views of failure, both vLLM's own: the engine's finished requests and how many ended with reason
    ``error``, and the API's answers and how many were 5xx (a request rejected before the engine shows only
    there; a non-streamed engine error shows in both, so they are rates side by side, never summed).
    """

    finished: float = 0.0
    errors: float = 0.0
    ttft: Histogram | None = None
    answers: float = 0.0
    answers_5xx: float = 0.0

    @property
    def requests(self) -> float:
        return max(self.finished, self.answers)

    @property
    def error_rate(self) -> float | None:
        rates = [e / n for e, n in ((self.errors, self.finished), (self.answers_5xx, self.answers)) if n > 0]
        return max(rates) if rates else None

    def ttft_p95(self) -> float | None:
        return None if self.ttft is None else self.ttft.quantile(0.95)

    def plus(self, other: WindowFigures) -> WindowFigures:
        ttft = other.ttft if self.ttft is None else (self.ttft if other.ttft is None else self.ttft.plus(other.ttft))
        return WindowFigures(
            self.finished + other.finished,
            self.errors + other.errors,
            ttft,
            self.answers + other.answers,
            self.answers_5xx + other.answers_5xx,
        )

    def to_dict(self) -> dict[str, Any]:
        ttft = (
            None
            if self.ttft is None
            else {
                "buckets": [[le, n] for le, n in self.ttft.buckets],
                "count": self.ttft.count,
                "total": self.ttft.total,
            }
        )
        return {
            "finished": self.finished,
            "errors": self.errors,
            "answers": self.answers,
            "answers_5xx": self.answers_5xx,
            "ttft": ttft,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> WindowFigures:
        t = doc.get("ttft")
        ttft = (
            None
            if t is None
            else Histogram(tuple((float(le), float(n)) for le, n in t["buckets"]), t["count"], t["total"])
        )
        return cls(doc["finished"], doc["errors"], ttft, doc.get("answers", 0.0), doc.get("answers_5xx", 0.0))


def window(before: MetricsSample, after: MetricsSample) -> WindowFigures:
    """Deltas between two samples of one host. A restart (counter went down) counts from 0."""
    finished = _delta(before.counter(SUCCESS), after.counter(SUCCESS))
    errors = _delta(before.counter(SUCCESS, "error"), after.counter(SUCCESS, "error"))
    answers = _delta(before.counter(HTTP), after.counter(HTTP))
    answers_5xx = _delta(before.counter(HTTP, "5xx"), after.counter(HTTP, "5xx"))
    ttft_after = after.histograms.get(TTFT)
    ttft_before = before.histograms.get(TTFT)
    if ttft_after is None:
        ttft = None
    elif ttft_before is None or ttft_after.count < ttft_before.count:
        ttft = ttft_after
    else:
        ttft = ttft_after.minus(ttft_before)
    return WindowFigures(finished, errors, ttft, answers, answers_5xx)


def _delta(before: float, after: float) -> float:
    return after if after < before else after - before


def in_flight(sample: MetricsSample) -> tuple[float, float]:
    """(running, waiting) requests; (0, 0) when vLLM does not report them."""
    return sample.gauge(RUNNING) or 0.0, sample.gauge(WAITING) or 0.0
