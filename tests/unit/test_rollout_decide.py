"""The rollout decider, row by row: hand-built journals in, next action out."""

from fleetctl.core.fleet import Host, RolloutSettings
from fleetctl.core.gate import GateSettings
from fleetctl.core.records import (
    AbortRequested,
    ActionBegin,
    ActionDone,
    ActionFailed,
    GateOutcome,
    Outcome,
    Record,
    RunFinished,
    RunStarted,
)
from fleetctl.core.rollout import Action, decide, replay
from fleetctl.core.rollout_plan import plan_rollout

PLAN = plan_rollout(
    (Host("a", "a", ring="canary"), Host("b", "b", ring="main"), Host("c", "c", ring="main")),
    RolloutSettings(rings=("canary", "main"), max_unavailable=2),
    serving=3,
    min_serving=1,
)


def record(body):
    return Record("2026-11-30T08:00:00.000Z", "r1", body)


def begin(action):
    return record(ActionBegin(action.ref()))


def done(action, passed=None, verdict=None, baseline=None):
    gate = None if passed is None else GateOutcome(passed, verdict or {}, baseline)
    return record(ActionDone(action.ref(), gate))


def started(reference):
    return record(RunStarted(PLAN, "next", "next.toml", "img:2", "r1", {}, reference, 3.0, GateSettings()))


def actions_until_finish(records=(), fail=None, limit=100):
    """Simulate: every action succeeds except ``fail`` (a key), which fails once. Returns the action keys."""
    records, seen = list(records), []
    for _ in range(limit):
        action = decide(replay(PLAN, records))
        seen.append(action.key() if action.kind != "finish" else f"finish:{action.outcome}")
        if action.kind == "finish":
            return seen
        records.append(begin(action))
        if action.key() == fail:
            records.append(record(ActionFailed(action.ref(), "never healthy")))
        elif action.kind == "judge":
            records.append(done(action, passed=True))
        else:
            records.append(done(action))
    raise AssertionError("no finish")


def test_a_clean_run_goes_ring_by_ring_batch_step_by_step():
    assert actions_until_finish() == [
        "pull:canary",
        "upgrade_step:canary:a:drain",
        "upgrade_step:canary:a:replace",
        "upgrade_step:canary:a:healthy",
        "upgrade_step:canary:a:undrain",
        "bake:canary",
        "judge:canary",
        "pull:main",
        "upgrade_step:main:b:drain",
        "upgrade_step:main:c:drain",
        "upgrade_step:main:b:replace",
        "upgrade_step:main:c:replace",
        "upgrade_step:main:b:healthy",
        "upgrade_step:main:c:healthy",
        "upgrade_step:main:b:undrain",
        "upgrade_step:main:c:undrain",
        "bake:main",
        "judge:main",
        "finish:completed",
    ]


def test_a_failed_gate_rolls_back_every_touched_host_newest_first():
    ring_a = ["pull:canary"] + [f"upgrade_step:canary:a:{s}" for s in ("drain", "replace", "healthy", "undrain")]
    records = []
    for key in ring_a + ["bake:canary"]:
        action = decide(replay(PLAN, records))
        assert action.key() == key
        records += [begin(action), done(action)]
    judge = decide(replay(PLAN, records))
    records += [begin(judge), done(judge, passed=False, verdict={"metric": "error_rate"})]
    state = replay(PLAN, records)
    assert state.failure.verdict == {"metric": "error_rate"}
    assert actions_until_finish(records) == [
        "rollback_step:a:drain",
        "rollback_step:a:restore",
        "rollback_step:a:healthy",
        "rollback_step:a:undrain",
        "finish:rolled_back",
    ]


def test_a_host_that_never_becomes_healthy_turns_the_run_around():
    keys = actions_until_finish(fail="upgrade_step:main:b:healthy")
    failed_at = keys.index("upgrade_step:main:b:healthy")
    assert keys[failed_at + 1 :] == [
        f"rollback_step:{host}:{step}"
        for host in ("c", "b", "a")
        for step in ("drain", "restore", "healthy", "undrain")
    ] + ["finish:rolled_back"]


def test_crash_mid_action_resumes_with_the_same_action():
    records = []
    for _ in range(3):
        action = decide(replay(PLAN, records))
        records += [begin(action), done(action)]
    crashed = decide(replay(PLAN, records))
    records.append(begin(crashed))  # SIGKILL here: begun, never done
    assert decide(replay(PLAN, records)) == crashed


def test_abort_puts_back_a_host_that_was_only_drained():
    records = []
    for _ in range(2):  # pull, drain a
        action = decide(replay(PLAN, records))
        records += [begin(action), done(action)]
    records.append(record(AbortRequested()))
    assert actions_until_finish(records) == ["rollback_step:a:undrain", "finish:aborted"]


def test_finished_run_stays_finished():
    assert decide(replay(PLAN, [record(RunFinished(Outcome.COMPLETED))])) == Action("finish", outcome="completed")


def figures(finished, ttft_fast, ttft_slow):
    """Window figures as journaled: ``ttft_fast`` requests under 50 ms, ``ttft_slow`` between 50 and 500 ms."""
    from fleetctl.core.metrics import Histogram, WindowFigures

    n = ttft_fast + ttft_slow
    ttft = Histogram(((0.05, ttft_fast), (0.5, n), (float("inf"), n)), n, 0.01 * n)
    return WindowFigures(finished=finished, errors=0.0, ttft=ttft, answers=finished).to_dict()


def test_old_version_figures_add_the_opening_window_and_every_ring_baseline():
    from fleetctl.core.rollout import old_version_figures

    judge = Action("judge", ring="canary", hosts=("a",))
    records = [
        started({**figures(10, 10, 0), "seconds": 1.5}),
        begin(judge),
        done(judge, passed=True, baseline=figures(30, 0, 30)),
        done(Action("judge", ring="main", hosts=("b", "c")), passed=True),
    ]  # no baseline: adds nothing
    total = old_version_figures(records)
    assert total.finished == 40 and total.ttft.count == 40
    assert 0.05 < total.ttft_p95() <= 0.5  # 30 of the 40 were slow
    assert old_version_figures(records[:1]).ttft_p95() <= 0.05
    assert old_version_figures([started(None)]) is None


def test_window_figures_survive_the_journal():
    import json

    from fleetctl.core.metrics import WindowFigures

    doc = json.loads(json.dumps(figures(7, 3, 4)))  # inf bucket bound included
    again = WindowFigures.from_dict(doc)
    assert again.to_dict() == figures(7, 3, 4) and again.ttft.buckets[-1][0] == float("inf")
