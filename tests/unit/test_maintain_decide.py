"""fleetctl.core.maintain: the maintenance state machine and planner, row by row with hand-built journals."""

from __future__ import annotations

import json

import pytest

from fleetctl.core.fleet import Host, Pool
from fleetctl.core.gate import GateSettings
from fleetctl.core.maintain import (
    Halt,
    HostBefore,
    decide,
    host_steps,
    left_drained,
    plan_maintenance,
    progress,
    replay,
)
from fleetctl.core.records import (
    AbortRequested,
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    GateOutcome,
    MaintainStarted,
    Outcome,
    Record,
    parse_record,
    record_doc,
)
from fleetctl.core.rollout import Action
from fleetctl.core.rollout_plan import PlanError, Ring, RolloutPlan

SERVING = {"url": "http://10.0.0.1:8000", "profile": "stable", "image": "img:1", "revision": "r1", "since": "t"}


def head(hosts=("a", "b"), *, commands=("apt-get install x",), reboot=True, drained=(), spare=(), batches=None):
    batches = batches or tuple((h,) for h in hosts)
    entries = {
        h: HostBefore(None if h in spare else {**SERVING, "model": "m"}, h in drained, "stable").to_dict()
        for h in hosts
    }
    return MaintainStarted(
        plan=RolloutPlan((Ring("canary", batches),), 1),
        commands=commands,
        sudo=False,
        reboot=reboot,
        reboot_command="systemctl reboot",
        reboot_timeout_s=900.0,
        expect=(),
        hosts=entries,
        bake_s=1.0,
        gate=GateSettings(),
    )


def rec(body) -> Record:
    return Record("2026-11-30T00:00:00.000Z", "run", body)


def step(host, name, kind=ActionKind.MAINTAIN_STEP, ring="canary"):
    return Action(kind, ring=ring if kind is ActionKind.MAINTAIN_STEP else None, host=host, step=name).ref()


def done_all(h, host, steps=None, detail=None):
    out = []
    for s in steps or host_steps(h, HostBefore.from_dict(h.hosts[host])):
        out += [
            rec(ActionBegin(step(host, s))),
            rec(ActionDone(step(host, s), detail=detail if s == "boot_id" else None)),
        ]
    return out


def test_a_serving_host_goes_through_every_step_in_order():
    h = head(("a",))
    assert host_steps(h, HostBefore.from_dict(h.hosts["a"])) == (
        "drain", "stop", "run.0", "boot_id", "reboot", "back", "verify", "start", "healthy", "undrain",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "host", "expected"),
    [
        ({"reboot": False}, "a", ("drain", "stop", "run.0", "verify", "start", "healthy", "undrain")),
        ({"spare": ("a",)}, "a", ("drain", "run.0", "boot_id", "reboot", "back", "verify", "undrain")),
        ({"drained": ("a",), "reboot": False}, "a", ("drain", "stop", "run.0", "verify", "start", "healthy")),
        ({"commands": (), "reboot": True}, "a", ("drain", "stop", "boot_id", "reboot", "back", "verify", "start", "healthy", "undrain")),
    ],
)  # fmt: skip
def test_steps_follow_what_the_host_runs_and_was(kwargs, host, expected):
    h = head(("a",), **kwargs)
    assert host_steps(h, HostBefore.from_dict(h.hosts[host])) == expected


def test_hosts_go_one_after_the_other_and_the_ring_is_judged_after():
    h = head()
    state = replay(h, [rec(h)])
    assert decide(state) == Action(ActionKind.MAINTAIN_STEP, ring="canary", host="a", step="drain")
    state = replay(h, [rec(h), *done_all(h, "a")])
    assert decide(state) == Action(ActionKind.MAINTAIN_STEP, ring="canary", host="b", step="drain")
    state = replay(h, [rec(h), *done_all(h, "a"), *done_all(h, "b")])
    assert decide(state) == Action(ActionKind.BAKE, ring="canary", hosts=("a", "b"))


def test_a_batch_moves_step_by_step_so_its_hosts_reboot_side_by_side():
    h = head(batches=(("a", "b"),))
    records = [rec(h)]
    seen = []
    for _ in range(8):
        action = decide(replay(h, records))
        assert isinstance(action, Action)
        seen.append((action.host, action.step))
        records += [
            rec(ActionBegin(action.ref())),
            rec(ActionDone(action.ref(), detail={"boot_id": "x"} if action.step == "boot_id" else None)),
        ]
    assert seen == [
        ("a", "drain"), ("b", "drain"), ("a", "stop"), ("b", "stop"), ("a", "run.0"), ("b", "run.0"),
        ("a", "boot_id"), ("b", "boot_id"),
    ]  # fmt: skip
    assert decide(replay(h, records)) == Action(ActionKind.MAINTAIN_STEP, ring="canary", host="a", step="reboot")


def test_a_ring_of_hosts_that_serve_nothing_is_not_judged():
    h = head(("a",), spare=("a",))
    state = replay(h, [rec(h), *done_all(h, "a")])
    assert decide(state) == Action(ActionKind.FINISH, outcome=Outcome.COMPLETED)


def test_a_failed_step_halts_with_the_host_and_reason_and_a_resume_tries_it_again():
    h = head(("a",))
    records = [rec(h), *done_all(h, "a", ["drain", "stop", "run.0", "boot_id", "reboot"])]
    back = step("a", "back")
    records += [rec(ActionBegin(back)), rec(ActionFailed(back, "reboot_timeout: not back"))]
    state = replay(h, records)
    assert decide(state) == Halt("a", "back", "reboot_timeout: not back")
    assert left_drained(state) == ("a",)
    resumed = replay(h, records)
    from dataclasses import replace

    assert decide(replace(resumed, failure=None)) == Action(
        ActionKind.MAINTAIN_STEP, ring="canary", host="a", step="back"
    )


def test_a_command_begun_and_not_journaled_done_is_never_run_again_without_rerun():
    h = head(("a",))
    records = [rec(h), *done_all(h, "a", ["drain", "stop"]), rec(ActionBegin(step("a", "run.0")))]
    halt = decide(replay(h, records))
    assert (
        isinstance(halt, Halt) and halt.host == "a" and "--rerun" in halt.reason and "apt-get install x" in halt.reason
    )
    assert decide(replay(h, records), rerun=True) == Action(
        ActionKind.MAINTAIN_STEP, ring="canary", host="a", step="run.0"
    )


def test_a_failed_command_also_needs_rerun_to_run_again():
    h = head(("a",))
    run0 = step("a", "run.0")
    records = [rec(h), *done_all(h, "a", ["drain", "stop"]), rec(ActionBegin(run0)), rec(ActionFailed(run0, "exit 1"))]
    from dataclasses import replace

    resumed = replace(replay(h, records), failure=None)
    assert isinstance(decide(resumed), Halt)
    assert isinstance(decide(resumed, rerun=True), Action)


def test_a_failed_gate_halts_the_run_naming_the_ring():
    h = head(("a",))
    judge = Action(ActionKind.JUDGE, ring="canary", hosts=("a",)).ref()
    records = [rec(h), *done_all(h, "a"), rec(ActionBegin(judge)), rec(ActionFailed(judge, "gate: error_rate"))]
    halt = decide(replay(h, records))
    assert halt == Halt(None, "gate of ring canary", "gate: error_rate")


@pytest.mark.parametrize(
    ("done_steps", "begun", "restores", "left"),
    [
        ([], None, [], ()),  # nothing touched: nothing to put back
        (["drain"], None, ["start", "healthy", "undrain"], ()),  # drained only: back into service
        (["drain", "stop"], None, ["start", "healthy", "undrain"], ()),  # stopped, commands not begun: back
        (["drain", "stop"], "run.0", [], ("a",)),  # a command began: stays drained, named
        (["drain", "stop", "run.0", "boot_id"], "reboot", [], ("a",)),  # rebooting: stays drained
    ],
)
def test_abort_in_each_state(done_steps, begun, restores, left):
    h = head(("a",))
    records = [rec(h), *done_all(h, "a", done_steps)]
    if begun:
        records.append(rec(ActionBegin(step("a", begun))))
    records.append(rec(AbortRequested()))
    seen = []
    while True:
        action = decide(replay(h, records))
        assert isinstance(action, Action)
        if action.kind is ActionKind.FINISH:
            assert action.outcome is Outcome.ABORTED
            break
        assert action.kind is ActionKind.RESTORE_STEP
        seen.append(action.step)
        records += [rec(ActionBegin(action.ref())), rec(ActionDone(action.ref()))]
    assert seen == restores
    assert left_drained(replay(h, records)) == left


def test_abort_keeps_a_host_drained_before_the_run_drained():
    h = head(("a",), drained=("a",))
    records = [rec(h), *done_all(h, "a", ["drain", "stop"]), rec(AbortRequested())]
    seen = []
    while True:
        action = decide(replay(h, records))
        assert isinstance(action, Action)
        if action.kind is ActionKind.FINISH:
            break
        seen.append(action.step)
        records += [rec(ActionBegin(action.ref())), rec(ActionDone(action.ref()))]
    assert seen == ["start", "healthy"]  # no undrain: a person drained it before the run


def test_the_head_and_a_done_detail_read_back_as_written():
    h = head()
    for body in (h, ActionDone(step("a", "boot_id"), detail={"boot_id": "abc"})):
        record = rec(body)
        assert parse_record(json.loads(json.dumps(record_doc(record)))) == record
    state = replay(h, [rec(h), rec(ActionDone(step("a", "boot_id"), detail={"boot_id": "abc"}))])
    assert state.boot_ids == {"a": "abc"}


def test_a_gate_outcome_is_kept_on_a_judge():
    ref = Action(ActionKind.JUDGE, ring="canary", hosts=("a",)).ref()
    record = rec(ActionDone(ref, GateOutcome(True, {"ring": "canary", "checks": []})))
    assert parse_record(record_doc(record)) == record


def test_progress_says_where_each_host_stands():
    h = head()
    records = [rec(h), *done_all(h, "a"), rec(ActionBegin(step("b", "drain")))]
    rows = progress(records)
    assert rows == [
        {"host": "a", "ring": "canary", "step": "undrain", "state": "done"},
        {"host": "b", "ring": "canary", "step": "drain", "state": "drained"},
    ]


# -- planning --------------------------------------------------------------------------------------------------


def hosts(*names, ring=None):
    return tuple(Host(n, n, ring=ring) for n in names)


def pool(name, members, min_serving=1):
    return Pool(name, "stable", "*", tuple(members), min_serving)


def test_batches_keep_each_pool_at_its_min_serving():
    targets = hosts("a1", "a2", "a3", "b1", "b2")
    pools = (pool("a", ("a1", "a2", "a3"), 2), pool("b", ("b1", "b2"), 1))
    serving = {"a1", "a2", "a3", "b1", "b2"}
    plan = plan_maintenance(targets, ("",), 4, serving, pools)
    batches = [b for r in plan.rings for b in r.batches]
    for batch in batches:
        assert sum(1 for h in batch if h.startswith("a")) <= 1
        assert sum(1 for h in batch if h.startswith("b")) <= 1
        assert len(batch) <= 4
    assert sorted(h for b in batches for h in b) == sorted(t.name for t in targets)


def test_hosts_not_serving_take_nothing_from_a_pool():
    plan = plan_maintenance(hosts("a1", "a2"), ("x",), 2, {"a1"}, (pool("a", ("a1", "a2"), 0),))
    assert [b for r in plan.rings for b in r.batches] == [("a1", "a2")]


def test_a_pool_with_no_room_is_refused_unless_forced():
    with pytest.raises(PlanError, match="pool a: 1 host\\(s\\) serving and min_serving = 1"):
        plan_maintenance(hosts("a1"), (), 1, {"a1"}, (pool("a", ("a1",)),))
    plan = plan_maintenance(hosts("a1"), (), 1, {"a1"}, (pool("a", ("a1",)),), force=True)
    assert plan.hosts == ("a1",)


def test_rings_follow_the_rollout_order():
    targets = (*hosts("c1", ring="canary"), *hosts("r1", "r2", ring="rest"))
    plan = plan_maintenance(targets, ("canary", "rest"), 1, set(), ())
    assert [(r.name, r.batches) for r in plan.rings] == [("canary", (("c1",),)), ("rest", (("r1",), ("r2",)))]
