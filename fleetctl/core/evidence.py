"""A ring's bake as a series of measurements, and the synthetic evidence fleetctl adds when clients are quiet.

Pure. ``classify`` turns one gate verdict (over the window from the bake's start to now) into a measurement;
``decide_bake`` turns the measurements so far into continue / abort / pass, as Argo Rollouts' analysis does with
``failureLimit``; ``smoke_due`` paces synthetic requests; ``smoke_requests`` is what they ask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleetctl.core.gate import Verdict


class Measurement(StrEnum):
    PASSED = "passed"  # enough evidence, every check passed
    FAILED = "failed"  # enough evidence, a check failed
    INCONCLUSIVE = "inconclusive"  # fewer requests than min_requests: neither pass nor fail (yet)
    UNHEALTHY = "unhealthy"  # a ring host exited or stopped answering: aborts at once


class Next(StrEnum):
    CONTINUE = "continue"
    ABORT = "abort"
    PASS = "pass"


@dataclass(frozen=True)
class BakeDecision:
    next: Next
    reason: str


def classify(verdict: Verdict) -> Measurement:
    """One measurement from the gate's verdict: health first, then evidence, then the checks."""
    failed = {c.metric for c in verdict.failures}
    if "health" in failed:
        return Measurement.UNHEALTHY
    if "requests" in failed:
        return Measurement.INCONCLUSIVE
    return Measurement.FAILED if failed else Measurement.PASSED


def decide_bake(
    measurements: Sequence[Measurement], failure_limit: int, bake_over: bool, evidence_overdue: bool = True
) -> BakeDecision:
    """Continue, abort or pass after the measurements so far (the last one is the newest).

    An unhealthy ring aborts at once; failed measurements abort when there are more than ``failure_limit``
    (strictly greater, as Argo's failureLimit); a ring passes only when the bake is over, with the whole bake's
    measurement conclusive. A bake that ends without enough evidence goes on gathering it (fleetctl's own
    requests make it up) until ``evidence_overdue``, then fails.
    """
    failed = sum(1 for m in measurements if m is Measurement.FAILED)
    last = measurements[-1] if measurements else None
    if last is Measurement.UNHEALTHY:
        return BakeDecision(Next.ABORT, "a host of the ring is not healthy")
    if failed > failure_limit:
        return BakeDecision(Next.ABORT, f"{failed} failed measurement(s), more than failure_limit {failure_limit}")
    if not bake_over:
        return BakeDecision(Next.CONTINUE, "baking")
    if last is None or last is Measurement.INCONCLUSIVE:
        if not evidence_overdue:
            return BakeDecision(Next.CONTINUE, "baked: gathering the requests the gate needs")
        return BakeDecision(Next.ABORT, "the bake ended without enough requests to judge")
    return BakeDecision(Next.PASS, f"{failed} failed measurement(s), within failure_limit {failure_limit}")


def evidence_grace_s(min_requests: int, rps: float, interval_s: float) -> float:
    """How long a bake that ended short of ``min_requests`` may go on gathering them: the time fleetctl's own
    requests at ``rps`` take to supply all of them, plus one interval; nothing when it sends none."""
    return min_requests / rps + interval_s if rps > 0 else 0.0


def smoke_due(elapsed_s: float, rps: float, sent: int) -> int:
    """How many synthetic requests a host is owed now: ``rps`` a second since sending began, less those sent."""
    if rps <= 0 or elapsed_s < 0:
        return 0
    return max(0, math.floor(elapsed_s * rps + 1e-9) + 1 - sent)


def short_of_evidence(requests: float, elapsed_s: float, min_requests: int, horizon_s: float) -> bool:
    """The ring's requests since its bake began are behind the pace that reaches ``min_requests`` by
    ``horizon_s`` (the first measurement): synthetic ones should make up the rest. Never once it has enough."""
    if requests >= min_requests:
        return False
    if horizon_s <= 0:
        return True
    return requests < min_requests * min(1.0, max(0.0, elapsed_s) / horizon_s)


def rebake_with_evidence(brief_s: float, bake_s: float, min_requests: int, rps: float) -> float:
    """A judge resumed without its bake's samples bakes again: ``brief_s``, but long enough for ``min_requests``
    synthetic requests at ``rps`` (with a second's margin), and never longer than the bake itself."""
    needed = min_requests / rps + 2.0 if rps > 0 else bake_s
    return min(bake_s, max(brief_s, needed))


@dataclass(frozen=True)
class Synthetic:
    """Requests fleetctl sent itself during one ring's bake: to the ring's hosts and to the baseline hosts."""

    ring: int = 0
    baseline: int = 0

    def to_dict(self, total: float | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"ring": self.ring, "baseline": self.baseline}
        if total is not None:
            doc["real"] = max(0, round(total) - self.ring)
        return doc


@dataclass(frozen=True)
class SmokeRequest:
    """One synthetic request: which OpenAI endpoint, streaming or not, and its JSON body."""

    path: str
    stream: bool
    body: Mapping[str, Any]


SHORT = "Say hello in one word."
LONG = (
    "Summarise the following maintenance note in one sentence. The fleet is upgraded ring by ring: each ring's "
    "hosts are drained, their serving container replaced by the new version, checked healthy, put back behind "
    "the router, and watched for errors and latency against the hosts still on the old version before the next "
    "ring begins. A ring that fails its gate is rolled back at once, newest first."
)
DEFAULT_PROMPTS = (SHORT, LONG)
MAX_TOKENS = 8


def smoke_requests(model: str, prompts: Sequence[str] = ()) -> tuple[SmokeRequest, ...]:
    """Every prompt as chat and completion, streaming and not (the built-in prompts, short and long, if none)."""
    out = []
    for prompt in prompts or DEFAULT_PROMPTS:
        for stream in (False, True):
            chat = {"model": model, "messages": [{"role": "user", "content": prompt}]}
            completion = {"model": model, "prompt": prompt}
            for path, body in (("/v1/chat/completions", chat), ("/v1/completions", completion)):
                out.append(SmokeRequest(path, stream, {**body, "max_tokens": MAX_TOKENS, "stream": stream}))
    return tuple(out)
