"""The live view's model, row by row: hand-built event sequences in, per-ring and per-host rows out."""

import pytest

from fleetctl.cli.live_upgrade import RunView, journal_events
from fleetctl.core.rollout_plan import Ring, RolloutPlan

PLAN = RolloutPlan(rings=(Ring("canary", (("a",),)), Ring("rest", (("b", "c"),))), batch_size=2)
STEPS = ("drain", "replace", "healthy", "undrain")
PASSED = [
    {"metric": "error_rate", "passed": True, "value": 0.0, "threshold": 0.01, "hosts": ["a"], "detail": "0.00% ≤ 1.00%"}
]
FAILED = [
    {
        "metric": "ttft_p95",
        "passed": False,
        "value": 3.1,
        "threshold": 1.5,
        "hosts": ["a"],
        "detail": "×3.10 the baseline > ×1.5",
    }
]


def step(host, name, ring=None, kind="upgrade_step"):
    fields = {"kind": kind, "host": host, "step": name, **({"ring": ring} if ring else {})}
    return [{"event": kind, **fields}, {"event": "done", **fields}]


def ring_events(ring, hosts, checks=PASSED):
    events = [{"event": "pull", "kind": "pull", "ring": ring}, {"event": "done", "kind": "pull", "ring": ring}]
    for name in STEPS:
        for host in hosts:
            events += step(host, name, ring)
    events += [
        {"event": "bake", "kind": "bake", "ring": ring},
        {"event": "done", "kind": "bake", "ring": ring},
        {"event": "judge", "kind": "judge", "ring": ring},
        {"event": "gate", "ring": ring, "passed": all(c["passed"] for c in checks), "checks": checks},
        {"event": "done", "kind": "judge", "ring": ring},
    ]
    return events


def rollback(host):
    return [e for name in ("drain", "restore", "healthy", "undrain") for e in step(host, name, kind="rollback_step")]


def feed(events, view=None, start=0.0):
    view = view or RunView(PLAN, bake_s=30)
    for i, event in enumerate(events):
        view.apply(event, start + i)
    return view


def states(view):
    return {**{r.name: r.state for r in view.rings.values()}, **{h.name: h.state for h in view.hosts.values()}}


def test_a_new_view_has_every_ring_pending_and_every_host_waiting():
    view = RunView(PLAN, bake_s=30)
    assert states(view) == {"canary": "pending", "rest": "pending", "a": "waiting", "b": "waiting", "c": "waiting"}
    assert (view.hosts["b"].ring, view.status()) == ("rest", "running")


@pytest.mark.parametrize(
    ("events", "row", "state"),
    [
        ([{"event": "pull", "kind": "pull", "ring": "canary"}], "canary", "pre-pull"),
        (
            [{"event": "pull", "kind": "pull", "ring": "canary"}, {"event": "done", "kind": "pull", "ring": "canary"}],
            "canary",
            "upgrading",
        ),
        (step("a", "drain", "canary")[:1], "a", "draining"),
        (step("a", "drain", "canary")[:1], "canary", "upgrading"),
        (step("a", "replace", "canary")[:1], "a", "replacing"),
        (step("a", "healthy", "canary")[:1], "a", "waiting healthy"),
        (step("a", "undrain", "canary")[:1], "a", "back in router"),
        (step("a", "undrain", "canary"), "a", "done"),
        (step("a", "replace", "canary"), "a", "replacing"),  # done, but not yet the next step
        ([{"event": "bake", "kind": "bake", "ring": "canary"}], "canary", "baking"),
        ([{"event": "judge", "kind": "judge", "ring": "canary"}], "canary", "judging"),
        (step("a", "restore", kind="rollback_step")[:1], "a", "rolling back: restore"),
        (step("a", "undrain", kind="rollback_step"), "a", "rolled back"),
        ([{"event": "failed", "host": "a", "reason": "docker: no space"}], "a", "failed: docker: no space"),
        ([{"event": "no_such_event", "host": "a"}], "a", "waiting"),
    ],
)
def test_one_event_at_a_time(events, row, state):
    assert states(feed(events))[row] == state


def test_a_clean_run_ends_with_every_host_done_and_every_gate_passed():
    view = feed(
        ring_events("canary", ["a"]) + ring_events("rest", ["b", "c"]) + [{"event": "finished", "outcome": "completed"}]
    )
    assert states(view) == {"canary": "gate passed", "rest": "gate passed", "a": "done", "b": "done", "c": "done"}
    assert (view.outcome, view.status(), view.failure) == ("completed", "completed", None)
    assert all(view.elapsed(row, 1000.0) is None for row in [*view.rings.values(), *view.hosts.values()])


def test_notes_follow_the_host_and_a_new_step_clears_them():
    view = feed(step("a", "healthy", "canary")[:1] + [{"event": "healthy", "host": "a", "seconds": 4.2}])
    assert view.hosts["a"].note == "healthy after 4.2s"
    feed([{"event": "not_answering", "host": "a", "detail": "connection refused"}], view)
    assert view.hosts["a"].note == "not answering: connection refused"
    feed(step("a", "undrain", "canary")[:1], view)
    assert view.hosts["a"].note == ""


def test_the_bake_counts_down_and_a_step_counts_up_until_it_is_done():
    view = RunView(PLAN, bake_s=30)
    view.apply({"event": "bake", "kind": "bake", "ring": "canary"}, 100.0)
    assert view.elapsed(view.rings["canary"], 110.0) == 20.0
    assert view.elapsed(view.rings["canary"], 200.0) == 0.0
    view.apply(step("b", "replace", "rest")[0], 100.0)
    assert view.elapsed(view.hosts["b"], 107.5) == 7.5
    view.apply(step("b", "replace", "rest")[1], 109.0)
    assert view.elapsed(view.hosts["b"], 150.0) == 9.0  # the clock stops when the step is done


def test_a_failed_gate_rolls_back_and_names_the_failing_check():
    view = feed(ring_events("canary", ["a"], checks=FAILED))
    assert view.rings["canary"].state == "gate FAILED"
    assert view.rings["canary"].detail == "ttft_p95: ×3.10 the baseline > ×1.5"
    feed(rollback("a")[:1], view)
    assert (view.hosts["a"].state, view.status()) == ("rolling back: drain", "rolling back")
    feed(rollback("a")[1:] + [{"event": "finished", "outcome": "rolled_back"}], view)
    assert states(view) == {
        "canary": "gate FAILED",
        "rest": "skipped",
        "a": "rolled back",
        "b": "not upgraded",
        "c": "not upgraded",
    }
    assert view.status() == "rolled back"


def test_a_failed_step_marks_the_host_and_its_ring_and_the_reason_stays_after_rollback():
    events = ring_events("canary", ["a"]) + ring_events("rest", ["b", "c"])[:6]  # pull, b and c drained
    view = feed(
        events
        + step("b", "replace", "rest")[:1]
        + [{"event": "failed", "host": "b", "reason": "docker: image not found"}]
    )
    assert view.hosts["b"].state == "failed: docker: image not found"
    assert (view.rings["rest"].state, view.rings["rest"].detail) == ("failed", "b: docker: image not found")
    feed(rollback("c")[-2:] + rollback("b") + rollback("a") + [{"event": "finished", "outcome": "rolled_back"}], view)
    assert states(view) == {
        "canary": "gate passed",
        "rest": "failed",
        "a": "rolled back",
        "b": "rolled back",
        "c": "rolled back",
    }
    assert (view.hosts["b"].error, view.failure) == ("docker: image not found", "b: docker: image not found")


def test_a_failed_rollback_step_leaves_the_run_rolling_back():
    view = feed(
        ring_events("canary", ["a"], checks=FAILED)
        + rollback("a")[:3]
        + [{"event": "failed", "host": "a", "reason": "ssh: unreachable"}]
    )
    assert (view.hosts["a"].state, view.rings["canary"].state) == ("failed: ssh: unreachable", "gate FAILED")
    assert (view.outcome, view.status()) == (None, "rolling back")


HEAD = {
    "event": "run_started",
    "profile": "next",
    "profile_path": "profiles/next.toml",
    "image": "img:2",
    "revision": "r1",
    "previous": {},
    "reference": None,
    "gate": {},
}


def journal(*records):
    """Journal records as read back (fleetctl.core.records), from their JSON objects."""
    from fleetctl.core.records import parse_record

    return [
        parse_record({"schema": "fleetctl.journal/v1", "run_id": "r1", "at": "2025-01-01T00:00:00Z", **r})
        for r in records
    ]


def begin(**fields):
    return {"event": "action_begin", "ring": None, "host": None, "step": None, **fields}


def done(**fields):
    return {"event": "action_done", "ring": None, "host": None, "step": None, **fields}


def test_resume_starts_from_the_journal_then_follows_the_new_events():
    records = journal(
        {**HEAD, "plan": PLAN.to_dict(), "bake_s": 30},
        begin(key="pull:canary", kind="pull", ring="canary"),
        done(key="pull:canary", kind="pull", ring="canary"),
        begin(key="upgrade_step:canary:a:drain", kind="upgrade_step", ring="canary", host="a", step="drain"),
        done(key="upgrade_step:canary:a:drain", kind="upgrade_step", ring="canary", host="a", step="drain"),
        begin(key="upgrade_step:canary:a:replace", kind="upgrade_step", ring="canary", host="a", step="replace"),
    )
    view = feed(list(journal_events(records)))
    assert states(view) == {"canary": "upgrading", "rest": "pending", "a": "replacing", "b": "waiting", "c": "waiting"}
    feed(
        [{"event": "resume", "run_id": "r1", "records": len(records)}]
        + step("a", "replace", "canary")
        + step("a", "healthy", "canary")
        + step("a", "undrain", "canary"),
        view,
    )
    assert (view.run_id, view.hosts["a"].state) == ("r1", "done")


def test_a_journaled_judge_becomes_a_gate_event_and_a_failure_a_failed_event():
    records = journal(
        {
            "event": "action_done",
            "key": "judge:canary",
            "kind": "judge",
            "ring": "canary",
            "host": None,
            "step": None,
            "passed": False,
            "verdict": {"ring": "canary", "checks": FAILED},
        },
        {
            "event": "action_failed",
            "key": "rollback_step:a:restore",
            "kind": "rollback_step",
            "host": "a",
            "step": "restore",
            "reason": "docker: gone",
        },
        {"event": "abort_requested"},
    )
    assert [e.to_dict()["event"] for e in journal_events(records)] == ["gate", "done", "failed"]
    view = feed(list(journal_events(records)))
    assert (view.rings["canary"].state, view.hosts["a"].state) == ("gate FAILED", "failed: docker: gone")


# -- fleetctl maintain through the same view ----------------------------------------------------------------------


def test_a_maintenance_shows_its_own_steps_and_title():
    from fleetctl.cli.live_upgrade import render

    view = RunView(PLAN, bake_s=30, title="maintain")
    events = [{"event": "maintain_step", "kind": "maintain_step", "ring": "canary", "host": "a", "step": "run.1"}]
    feed(events, view)
    assert (view.rings["canary"].state, view.hosts["a"].state) == ("maintaining", "running command 2")
    feed([{"event": "maintain_step", "kind": "maintain_step", "ring": "canary", "host": "a", "step": "back"}], view)
    assert view.hosts["a"].state == "waiting for the new boot"
    feed(step("a", "undrain", "canary", kind="maintain_step"), view)
    assert view.hosts["a"].state == "done"
    assert str(render(view, 1.0).title).startswith("maintain")


def test_an_aborted_maintenance_puts_a_host_back_as_a_turn_back():
    view = feed(step("a", "undrain", kind="restore_step"), RunView(PLAN, bake_s=30, title="maintain"))
    assert view.hosts["a"].state == "put back" and view.rolling_back
