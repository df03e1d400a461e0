"""Upgrades in a quiet window and early abort, on the in-memory fleet (tests/fake): with no client traffic at all
fleetctl's own requests are the evidence; the gate judges every interval and stops a bad canary at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetctl.core.gate import GateSettings
from fleetctl.core.rollout import summarize
from fleetctl.errors import RolledBack
from fleetctl.services.journal import list_runs
from tests.fake import Behaviour, FakeFleet
from tests.fake.drive import Events, resume, upgrade
from tests.fake.fleet import NEW_IMAGE, OLD_IMAGE
from tests.fake.record import Crash, crash_after

GATE = GateSettings(min_requests=20, interval_s=5.0, failure_limit=0, smoke_rps=2.0)
BAKE_S = 30.0


class Timed(Events):
    """The executor's events, each also put on the fake fleet's timeline (beside its synthetic requests and
    drain waits) with the clock's time."""

    def __init__(self, fake: FakeFleet) -> None:
        super().__init__()
        self.fake = fake

    def __call__(self, event: dict) -> None:
        super().__call__({**event, "t": self.fake.clock.now})
        what = f"{event.get('event')}:{event.get('step') or ''}"
        self.fake.timeline.append((self.fake.clock.now, what, event.get("host") or event.get("ring") or ""))


def quiet(tmp_path: Path) -> tuple[FakeFleet, Timed]:
    fake = FakeFleet(tmp_path, bake_s=BAKE_S, rate=0.0)  # no client sends anything
    return fake, Timed(fake)


def journal_gates(fake: FakeFleet) -> list[dict]:
    run = next(iter(list_runs(fake.fleet.state_dir)))
    path = Path(run.path)
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    return [d for d in docs if d.get("kind") == "judge" and "passed" in d]


def bake_span(events: Events, ring: str) -> tuple[float, float]:
    begun = next(e["t"] for e in events if e["event"] == "bake" and e.get("ring") == ring)
    done = next(e["t"] for e in events if e["event"] == "done" and e.get("kind") == "bake" and e.get("ring") == ring)
    return begun, done


def test_a_healthy_version_completes_with_no_client_traffic(tmp_path):
    fake, events = quiet(tmp_path)
    assert upgrade(fake, events, gate=GATE).finished == "completed"
    assert set(fake.images().values()) == {NEW_IMAGE}
    gates = events.named("gate")
    assert [g["ring"] for g in gates] == ["canary", "early", "main"] and all(g["passed"] for g in gates)
    for g in gates:
        assert g["synthetic"]["ring"] >= GATE.min_requests and g["synthetic"]["real"] == 0
    # like with like: the hosts still on the old version got the same synthetic traffic; the last ring has none
    assert gates[0]["synthetic"]["baseline"] > 0 and gates[-1]["synthetic"]["baseline"] == 0
    assert fake.smoke_sent() == sum(g["synthetic"]["ring"] + g["synthetic"]["baseline"] for g in gates)


def test_the_journal_and_summary_say_how_many_requests_were_synthetic(tmp_path):
    fake, events = quiet(tmp_path)
    upgrade(fake, events, gate=GATE)
    journaled = journal_gates(fake)
    assert [j["verdict"]["synthetic"] for j in journaled] == [g["synthetic"] for g in events.named("gate")]
    assert all(j["verdict"]["measurements"] for j in journaled)
    run = next(iter(list_runs(fake.fleet.state_dir)))
    rows = summarize(run.records)
    assert [r["synthetic"]["ring"] for r in rows] == [g["synthetic"]["ring"] for g in events.named("gate")]


@pytest.mark.parametrize(
    ("behaviour", "metric"),
    [
        (Behaviour(error_rate=0.5), "error_rate"),  # failing
        (Behaviour(ttft_s=0.5), "ttft_p95_ratio"),  # slow: ×10 the old version's TTFT on the same prompts
        (Behaviour(crash_after_s=4.0), "health"),  # crashing: healthy at first, exits during the bake
    ],
)
def test_a_bad_version_is_caught_at_the_canary_with_no_client_traffic(tmp_path, behaviour, metric):
    fake, events = quiet(tmp_path)
    fake.behaviours[NEW_IMAGE] = behaviour
    with pytest.raises(RolledBack, match=f"ring canary failed its gate on {metric}"):
        upgrade(fake, events, gate=GATE)
    assert set(fake.images().values()) == {OLD_IMAGE} and fake.in_router() == set(fake.hosts)
    gate = events.named("gate")[0]
    begun, done = bake_span(events, "canary")
    assert done - begun < BAKE_S  # stopped early, not after the whole bake
    if metric != "health":
        assert gate["synthetic"]["ring"] >= GATE.min_requests  # judged on its own evidence


def test_a_bad_canary_with_clients_is_stopped_within_one_interval(tmp_path):
    fake = FakeFleet(tmp_path, bake_s=60.0, rate=10.0)
    events = Timed(fake)
    fake.behaviours[NEW_IMAGE] = Behaviour(error_rate=0.5)
    with pytest.raises(RolledBack, match="ring canary failed its gate on error_rate"):
        upgrade(fake, events, gate=GATE)
    begun, done = bake_span(events, "canary")
    assert done - begun <= GATE.interval_s + 0.5
    assert events.named("gate")[0]["synthetic"]["ring"] == 0  # clients gave enough evidence: none of ours


def test_failure_limit_tolerates_that_many_failed_measurements(tmp_path):
    fake = FakeFleet(tmp_path, bake_s=60.0, rate=10.0)
    events = Timed(fake)
    fake.behaviours[NEW_IMAGE] = Behaviour(error_rate=0.5)
    with pytest.raises(RolledBack):
        upgrade(fake, events, gate=GateSettings(min_requests=20, interval_s=5.0, failure_limit=2))
    begun, done = bake_span(events, "canary")
    assert 3 * 5.0 <= done - begun <= 3 * 5.0 + 0.5  # the third failed measurement aborts
    assert [m["result"] for m in events.named("gate")[0]["measurements"]] == ["failed"] * 3


def test_a_healthy_ring_passes_only_after_its_whole_bake(tmp_path):
    fake = FakeFleet(tmp_path, bake_s=12.0, rate=10.0)
    events = Timed(fake)
    assert upgrade(fake, events, gate=GATE).finished == "completed"
    begun, done = bake_span(events, "canary")
    assert done - begun >= 12.0
    assert [m["result"] for m in events.named("gate")[0]["measurements"]] == ["passed"] * 3  # at 5, 10 and 12 s


def test_synthetic_traffic_stops_before_any_drain(tmp_path):
    fake, events = quiet(tmp_path)
    fake.host_behaviours[("gpu-02", NEW_IMAGE)] = Behaviour(error_rate=0.5)  # the early ring fails: a rollback
    with pytest.raises(RolledBack):
        upgrade(fake, events, gate=GATE)
    baking = False
    for _, what, host in fake.timeline:
        if what != "smoke":
            baking = what == "bake:"  # any other event (a bake's end, a step, a drain's wait) ends it
        else:
            assert baking, f"a synthetic request to {host} outside a bake"
    assert any(what == "in_flight" for _, what, _ in fake.timeline) and fake.smoke_sent() > 0


def test_a_bake_resumed_after_a_crash_starts_its_evidence_again(tmp_path):
    fake, events = quiet(tmp_path)

    def crash() -> None:
        raise Crash("mid-bake")

    class CrashMidBake(Timed):
        def __call__(self, event: dict) -> None:
            super().__call__(event)
            if event.get("event") == "bake" and event.get("ring") == "canary":
                fake.clock.after(7.0, crash)

    with pytest.raises(Crash):
        upgrade(fake, CrashMidBake(fake), gate=GATE)
    assert fake.smoke_sent("gpu-01") > 0  # evidence was being gathered when the run died
    mark = len(fake.timeline)
    again = Timed(fake)
    assert resume(fake, again).finished == "completed"
    canary = again.named("gate")[0]
    sent_after = sum(1 for _, what, h in fake.timeline[mark:] if what == "smoke" and h == "gpu-01")
    assert canary["ring"] == "canary" and canary["synthetic"]["ring"] == sent_after
    assert canary["measurements"][-1]["requests"] == canary["synthetic"]["ring"]  # nothing from before the crash


def test_a_judge_resumed_after_its_bake_bakes_again_long_enough_for_its_evidence(tmp_path):
    fake, events = quiet(tmp_path)
    with crash_after(13), pytest.raises(Crash):  # the canary's bake journaled done; its judge not begun
        upgrade(fake, events, gate=GATE)
    again = Timed(fake)
    assert resume(fake, again).finished == "completed"
    canary = again.named("gate")[0]
    assert canary["ring"] == "canary" and canary["synthetic"]["ring"] >= GATE.min_requests
