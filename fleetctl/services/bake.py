"""A ring's bake, watched: the gate judges every ``interval_s`` over the window from the bake's start, and
synthetic requests make up the evidence while real ones are short.

The decisions are ``fleetctl.core.evidence`` (measurement, continue / abort / pass, pacing); this module samples,
sends and sleeps on the run's clock. Synthetic requests go to the ring's hosts and, the same prompts at the same
rate, to the baseline hosts, so the TTFT comparison is like with like; they stop (and those in flight finish)
before ``watch`` returns, so no drain or rollback after it ever waits on fleetctl's own requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.evidence import (
    Measurement,
    Next,
    SmokeRequest,
    Synthetic,
    classify,
    decide_bake,
    evidence_grace_s,
    short_of_evidence,
)
from fleetctl.core.gate import GateSettings, Verdict
from fleetctl.core.metrics import MetricsSample, window
from fleetctl.core.rollout_decisions import JudgeInputs, sum_figures
from fleetctl.services.rollout_ports import RolloutPorts
from fleetctl.services.smoke import SmokeSender

TICK_S = 0.5  # the bake loop's step: smoke pacing and the interrupt are looked at this often
FEED_S = 1.0  # the ring's evidence is read this often while deciding whether to send synthetic requests

Judge = Callable[[Mapping[str, MetricsSample], Mapping[str, MetricsSample]], tuple[JudgeInputs, Verdict]]


@dataclass
class BakeResult:
    inputs: JudgeInputs
    verdict: Verdict
    synthetic: Synthetic
    measurements: list[dict[str, Any]] = field(default_factory=list)
    early: bool = False  # stopped before the bake's end
    passed: bool = False  # the bake's decision: passed only after its whole bake (``core.evidence``)

    def report(self) -> dict[str, Any]:
        """What the judge journals and emits beside the checks."""
        total = sum_figures(self.inputs.ring.values()).requests
        return {"synthetic": self.synthetic.to_dict(total), "measurements": self.measurements, "early": self.early}


@dataclass
class Watch:
    """One bake of ``ring`` (host → serving URL) against ``baseline`` hosts (host → serving URL)."""

    ports: RolloutPorts
    gate: GateSettings
    requests: tuple[SmokeRequest, ...]
    ring: Mapping[str, str]
    baseline: Mapping[str, str]
    judge: Judge
    interrupt: threading.Event
    history: list[dict[str, Any]] = field(default_factory=list)  # each measurement so far

    def run(self, before: Mapping[str, MetricsSample], seconds: float) -> BakeResult:
        """Bake for ``seconds`` (less when the gate aborts); the last measurement's result."""
        sender = self.ports.smoke(self.requests, self.gate.smoke_rps)
        try:
            return self._loop(sender, before, seconds)
        finally:
            sender.close()  # before any drain or rollback: nothing of ours stays in flight

    def _loop(self, sender: SmokeSender, before: Mapping[str, MetricsSample], seconds: float) -> BakeResult:
        clock, gate = self.ports.clock, self.gate
        start = clock.monotonic()
        deadline, judge_at = start + seconds, start + max(gate.interval_s, TICK_S)
        overdue_at = deadline + evidence_grace_s(gate.min_requests, gate.smoke_rps, gate.interval_s)
        feed_at, horizon = start + FEED_S, min(seconds, max(gate.interval_s, TICK_S))
        measured: list[Measurement] = []
        result: BakeResult | None = None
        judged_end = False  # the measurement at the bake's end is taken; after it, only at judge_at
        while True:
            now = clock.monotonic()
            over = now >= deadline - 1e-9
            if (over and not judged_end) or now >= judge_at - 1e-9:
                judged_end = over
                sender.pause()
                sender.stop()  # the measurement counts only answered requests
                result = self._measure(sender, before, round(now - start, 3))
                measured.append(classify(result.verdict))
                result.measurements[-1]["result"] = measured[-1].value
                decision = decide_bake(measured, gate.failure_limit, over, now >= overdue_at - 1e-9)
                if decision.next is not Next.CONTINUE:
                    result.early, result.passed = not over, decision.next is Next.PASS
                    return result
                # past the bake, look again every second while fleetctl's own requests make up the evidence
                judge_at = now + FEED_S if over else judge_at + max(gate.interval_s, TICK_S)
                feed_at = now
            if now >= feed_at - 1e-9:
                self._feed(sender, before, now - start, horizon)
                feed_at = now + FEED_S
            sender.tick()
            if self.interrupt.is_set():
                raise KeyboardInterrupt  # the bake is begun, not done: resume bakes again
            wake = judge_at if over else min(deadline, judge_at)
            clock.sleep(max(0.0, min(TICK_S, wake - now)))

    def _feed(
        self, sender: SmokeSender, before: Mapping[str, MetricsSample], elapsed_s: float, horizon_s: float
    ) -> None:
        """Send synthetic requests while the ring's requests since the bake began are short of the pace to
        ``min_requests`` by the first measurement; stop once it has them."""
        if self.gate.smoke_rps <= 0 or not self.requests:
            return
        now = self.ports.sample_serving(tuple(self.ring))
        seen = sum_figures(window(before[h], now[h]) for h in self.ring if h in before and h in now).requests
        if short_of_evidence(seen, elapsed_s, self.gate.min_requests, horizon_s):
            sender.start({**self.ring, **self.baseline})
        else:
            sender.pause()

    def _measure(self, sender: SmokeSender, before: Mapping[str, MetricsSample], at_s: float) -> BakeResult:
        inputs, verdict = self.judge(before, self.ports.sample_serving())
        synthetic = Synthetic(sender.sent_to(tuple(self.ring)), sender.sent_to(tuple(self.baseline)))
        requests = sum_figures(inputs.ring.values()).requests
        self.history.append({"at_s": at_s, "requests": requests, "synthetic": synthetic.ring})
        return BakeResult(inputs, verdict, synthetic, self.history)
