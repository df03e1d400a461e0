"""A ring's bake and judge, shared by the upgrade and the maintenance executors.

``RingGate.bake`` watches the ring for the bake time (``services.bake.Watch``, judged every interval); ``judge``
turns the last measurement into the journal's ``GateOutcome``. A run resumed between the two bakes again,
briefly, with its evidence from the start. The baseline is the hosts serving now that the run has not touched
(within ``peers``, a run's pool) and, when none is left, the old version's figures recorded so far (``old``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from fleetctl.core.events import GateJudged
from fleetctl.core.evidence import rebake_with_evidence, smoke_requests
from fleetctl.core.gate import GateSettings, Verdict, judge_ring
from fleetctl.core.metrics import MetricsSample, WindowFigures
from fleetctl.core.records import GateOutcome
from fleetctl.core.rollout_decisions import JudgeInputs, judge_inputs, rebake_s, with_baseline
from fleetctl.services.bake import BakeResult, Watch
from fleetctl.services.rollout_ports import RolloutPorts

Sink = Callable[[dict[str, Any]], None]


class RingGate:
    def __init__(
        self,
        ports: RolloutPorts,
        gate: GateSettings,
        bake_s: float,
        model: str,
        stop: threading.Event,
        on_event: Sink,
        *,
        peers: frozenset[str] | None = None,
        old: WindowFigures | None = None,
    ) -> None:
        self.ports, self.gate, self.bake_s, self.model, self.stop = ports, gate, bake_s, model, stop
        self.on_event, self.peers, self.old = on_event, peers, old
        self.bakes: dict[str, BakeResult] = {}  # ring → its bake's last measurement, for its judge

    def bake(self, ring: str, hosts: tuple[str, ...], touched: tuple[str, ...]) -> None:
        before = self.ports.sample_serving()
        self.bakes[ring] = self._watch(hosts, touched).run(before, self.bake_s)

    def judge(self, ring: str | None, hosts: tuple[str, ...], touched: tuple[str, ...]) -> GateOutcome:
        result = self.bakes.pop(ring or "", None)
        if result is None:  # resumed between bake and judge: bake again, briefly, its evidence from the start
            seconds = rebake_with_evidence(
                rebake_s(self.bake_s), self.bake_s, self.gate.min_requests, self.gate.smoke_rps
            )
            result = self._watch(hosts, touched).run(self.ports.sample_serving(), seconds)
        inputs, report = result.inputs, result.report()
        checks = [c.to_dict() for c in result.verdict.checks]
        self.on_event(GateJudged(ring, result.passed, checks, report["synthetic"], report["measurements"]).to_dict())
        self.old = with_baseline(self.old, inputs.baseline)
        baseline = None if inputs.baseline is None else inputs.baseline.to_dict()
        return GateOutcome(result.passed, {"ring": ring, "checks": checks, **report}, baseline)

    def _watch(self, hosts: tuple[str, ...], touched: tuple[str, ...]) -> Watch:
        serving = self.serving()
        ring = {h: serving[h] for h in hosts if h in serving}
        baseline = {h: url for h, url in serving.items() if h not in touched and h not in ring}
        requests = smoke_requests(self.model, self.gate.smoke_prompts)

        def judge(
            before: Mapping[str, MetricsSample], after: Mapping[str, MetricsSample]
        ) -> tuple[JudgeInputs, Verdict]:
            inputs = judge_inputs(hosts, before, after, touched, serving, self.old)
            return inputs, judge_ring(
                inputs.ring, inputs.compare_with, inputs.unhealthy, self.gate, baseline_source=inputs.source
            )

        return Watch(self.ports, self.gate, requests, ring, baseline, judge, self.stop)

    def serving(self) -> dict[str, str]:
        """Host → URL of every host serving now (not drained), within ``peers`` when given."""
        state = self.ports.load_state()
        peers = self.peers
        return {h: r.url for h, r in state.serving.items() if not state.is_drained(h) and (peers is None or h in peers)}
