"""Pure figures for the serving benches: when a drained host stopped getting traffic, and where an upgrade's time
went according to its run journal. No I/O: the benches hand in samples and journal records.

Times are epoch seconds (``time.time()``), so that the bench's own stamps line up with the journal's ISO ``at``.
A sample is ``(t, value)`` with value None when that poll failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

SERVED_PREFIXES = ("vllm:request_success_total{", "vllm:num_requests_running{", "vllm:num_requests_waiting{")
UPGRADE_STEPS = ("drain", "replace", "healthy", "undrain")

Sample = tuple[float, object]


def served_count(metrics_text: str) -> float:
    """Requests a vLLM server has taken in: finished (every finished_reason) + running + waiting.

    A request moving from waiting to running to finished keeps the sum; only a new request raises it. Plain line
    matching, not prometheus_client's parser: the benches call this in a tight loop on a 2-core machine."""
    total, seen = 0.0, False
    for line in metrics_text.splitlines():
        if line.startswith(SERVED_PREFIXES):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    if not seen:
        raise ValueError("no vllm:request_success_total or vllm:num_requests_running in the metrics")
    return total


# -- drain --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainCut:
    """Seconds after the drain started: out of /list_workers for good, served count at its final value, both."""

    gone_s: float
    stopped_s: float

    @property
    def out_s(self) -> float:
        return max(self.gone_s, self.stopped_s)


def drain_cutoff(router: Sequence[Sample], served: Sequence[Sample], url: str, t0: float) -> DrainCut:
    """When the router stopped sending ``url`` new requests. ValueError if the samples do not show a drain."""
    return DrainCut(gone_s=_gone_at(router, url) - t0, stopped_s=_stopped_at(served) - t0)


def _gone_at(router: Sequence[Sample], url: str) -> float:
    """The first sample without ``url`` after the last one that had it."""
    seen = [(t, urls) for t, urls in router if urls is not None]
    last_in = max((i for i, (_, urls) in enumerate(seen) if url in urls), default=None)
    if last_in is None:
        raise ValueError(f"{url} was never in the router's list_workers while watched")
    if last_in == len(seen) - 1:
        raise ValueError(f"{url} is still in the router's list_workers at the end of the watch")
    return seen[last_in + 1][0]


def _stopped_at(served: Sequence[Sample]) -> float:
    """The first sample at the final served count; ValueError unless the count grew while watched."""
    seen = [(t, v) for t, v in served if v is not None]
    if len(seen) < 2:
        raise ValueError("too few answers from the host's /metrics to tell when traffic stopped")
    values = [v for _, v in seen]
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError("the host's served count went down while watched (the server restarted?)")
    final = values[-1]
    if values[0] >= final:
        raise ValueError("no request reached the host while watched: is the load flowing to it?")
    return next(t for t, v in seen if v >= final)


def poll_gaps(samples: Sequence[Sample]) -> tuple[float, float]:
    """(median, max) seconds between answered polls: the resolution of figures read from them."""
    times = [t for t, v in samples if v is not None]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return (statistics.median(gaps), max(gaps)) if gaps else (float("nan"), float("nan"))


def absent_spans(router: Sequence[Sample], url: str) -> list[tuple[float, float | None]]:
    """(start, end) of each stretch ``url`` was missing from list_workers after having been there; end None if it
    was still missing at the last sample."""
    spans: list[tuple[float, float | None]] = []
    was_in, start = False, None
    for t, urls in router:
        if urls is None:
            continue
        if url in urls:
            if start is not None:
                spans.append((start, t))
                start = None
            was_in = True
        elif was_in and start is None:
            start = t
    if start is not None:
        spans.append((start, None))
    return spans


# -- upgrade ------------------------------------------------------------------------------------------------------


def epoch(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def action_spans(records: Iterable[dict]) -> dict[str, tuple[float, float]]:
    """``key`` → (begin, done) of every action of a run that completed without a failure or a rollback."""
    begins: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    outcome = None
    for r in records:
        event = r.get("event")
        if event == "action_failed" or r.get("kind") == "rollback_step":
            raise ValueError(f"not a healthy upgrade: {r.get('key')} {event} {r.get('reason') or ''}".rstrip())
        if event == "action_begin":
            begins.setdefault(r["key"], epoch(r["at"]))
        elif event == "action_done":
            spans[r["key"]] = (begins[r["key"]], epoch(r["at"]))
        elif event == "run_finished":
            outcome = r.get("outcome")
    if outcome != "completed":
        raise ValueError(f"the run did not complete (outcome {outcome or 'none: still running?'})")
    return spans


@dataclass(frozen=True)
class HostSteps:
    """One host's upgrade, from the journal: each step as (begin, done)."""

    name: str
    steps: dict[str, tuple[float, float]]

    def seconds(self, step: str) -> float:
        begin, done = self.steps[step]
        return done - begin

    @property
    def start_to_healthy_s(self) -> float:
        return self.steps["healthy"][1] - self.steps["replace"][0]

    @property
    def out_of_router_s(self) -> float:
        return self.steps["undrain"][1] - self.steps["drain"][0]

    @property
    def slack_s(self) -> float:
        """What else sat inside the host's time out of the router: the undrain step and the gaps between steps."""
        return self.out_of_router_s - self.seconds("drain") - self.start_to_healthy_s

    def to_dict(self) -> dict[str, float]:
        doc = {f"{step}_s": self.seconds(step) for step in UPGRADE_STEPS}
        doc.update(
            start_to_healthy_s=self.start_to_healthy_s, out_of_router_s=self.out_of_router_s, slack_s=self.slack_s
        )
        return {k: round(v, 3) for k, v in doc.items()}


def host_steps(spans: dict[str, tuple[float, float]]) -> list[HostSteps]:
    """Every upgraded host in journal order; keys look like ``upgrade_step:RING:HOST:STEP``."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for key, span in sorted(spans.items(), key=lambda kv: kv[1][0]):
        parts = key.split(":")
        if parts[0] == "upgrade_step" and len(parts) == 4:
            found.setdefault(parts[2], {})[parts[3]] = span
    missing = [f"{h}:{s}" for h, steps in found.items() for s in UPGRADE_STEPS if s not in steps]
    if missing:
        raise ValueError(f"journal lacks steps {', '.join(missing)}")
    return [HostSteps(name, steps) for name, steps in found.items()]


def _total(spans: dict[str, tuple[float, float]], kind: str, step: str | None = None) -> float:
    return sum(
        d - b
        for key, (b, d) in spans.items()
        if key.split(":")[0] == kind and (step is None or key.split(":")[-1] == step)
    )


def upgrade_figures(records: list[dict], started: float, ended: float) -> dict:
    """Where a healthy upgrade's wall time went. ``started``/``ended``: the command's start and exit."""
    spans = action_spans(records)
    hosts = host_steps(spans)
    head = epoch(records[0]["at"])
    tail = epoch(next(r["at"] for r in records if r.get("event") == "run_finished"))
    total = ended - started
    to_healthy = sum(h.start_to_healthy_s for h in hosts)
    bake = _total(spans, "bake")
    overhead = total - to_healthy - bake
    phases = {
        "startup_and_preflight": head - started,
        "pull": _total(spans, "pull"),
        "drain": _total(spans, "upgrade_step", "drain"),
        "undrain": _total(spans, "upgrade_step", "undrain"),
        "judge": _total(spans, "judge"),
        "exit": ended - tail,
    }
    phases["gaps"] = overhead - sum(phases.values())  # journal writes and bookkeeping between actions
    return {
        "total_s": round(total, 3),
        "start_to_healthy_sum_s": round(to_healthy, 3),
        "bake_sum_s": round(bake, 3),
        "overhead_s": round(overhead, 3),
        "overhead_per_host_s": round(overhead / len(hosts), 3),
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "hosts": {h.name: h.to_dict() for h in hosts},
    }


# -- summaries ----------------------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def target(value: float, goal: str, met: bool) -> dict:
    return {"value": round(value, 3), "target": goal, "result": "PASS" if met else "MISS"}
