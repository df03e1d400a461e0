"""The rollout executor through every path ``decide`` can take, on the in-memory fleet (tests/fake): seconds,
no root. Each test checks where the fleet ends up: images, router, state records, the journal's outcome."""

import contextlib
import os
import signal

import pytest

from fleetctl.core.records import ActionDone, RecordKind
from fleetctl.errors import RolledBack, RouterError
from fleetctl.services.journal import list_runs
from tests.fake import Behaviour, FakeFleet
from tests.fake.drive import Events, resume, upgrade
from tests.fake.fleet import NEW_IMAGE, OLD_IMAGE
from tests.fake.record import Crash, crash_after, crash_before_done

HOSTS = ("gpu-01", "gpu-02", "gpu-03", "gpu-04")
RING_HOSTS = {"canary": ("gpu-01",), "early": ("gpu-02",), "main": ("gpu-03", "gpu-04")}


def journal(fake):
    return next(iter(list_runs(fake.fleet.state_dir)))


def outcome(fake):
    finished = [r.body.outcome.value for r in journal(fake).records if r.kind is RecordKind.RUN_FINISHED]
    return finished[-1] if finished else "unfinished"


def steps(events, kind, step):
    return [e["host"] for e in events if e["event"] == kind and e.get("step") == step]


def assert_all_on(fake, image):
    """Every host runs ``image``, is in the router and recorded serving it, none drained."""
    assert set(fake.images().values()) == {image}
    assert fake.in_router() == set(fake.hosts)
    state = fake.state()
    assert not state.drained and {r.image for r in state.serving.values()} == {image}


def test_a_healthy_run_upgrades_ring_by_ring_and_records_the_new_version(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    assert upgrade(fake, events).finished == "completed"
    assert_all_on(fake, NEW_IMAGE)
    assert steps(events, "upgrade_step", "replace") == list(HOSTS)
    assert [e["ring"] for e in events.named("gate")] == ["canary", "early", "main"]
    assert all(e["passed"] for e in events.named("gate"))
    revision = journal(fake).run_id
    assert {r.revision for r in fake.state().serving.values()} == {revision}


@pytest.mark.parametrize("ring", ["canary", "early", "main"])
def test_a_failed_gate_at_any_ring_rolls_back_every_touched_host_newest_first(tmp_path, ring):
    fake, events = FakeFleet(tmp_path), Events()
    for host in RING_HOSTS[ring]:
        fake.host_behaviours[(host, NEW_IMAGE)] = Behaviour(error_rate=0.5)
    with pytest.raises(RolledBack, match=f"ring {ring} failed its gate on error_rate"):
        upgrade(fake, events)
    touched = [h for r in RING_HOSTS for h in RING_HOSTS[r]][: HOSTS.index(RING_HOSTS[ring][-1]) + 1]
    assert steps(events, "rollback_step", "restore") == list(reversed(touched))
    assert_all_on(fake, OLD_IMAGE)
    assert outcome(fake) == "rolled_back"
    assert {r.revision for r in fake.state().serving.values()} == {"r0"}  # the records from before the run


def test_a_host_never_healthy_turns_the_run_around(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    fake.host_behaviours[("gpu-02", NEW_IMAGE)] = Behaviour(healthy=False)
    with pytest.raises(RolledBack, match="upgrade_step:early:gpu-02:healthy failed on gpu-02: unhealthy"):
        upgrade(fake, events)
    assert events.named("failed")[0]["host"] == "gpu-02"
    assert steps(events, "rollback_step", "restore") == ["gpu-02", "gpu-01"]
    assert_all_on(fake, OLD_IMAGE)


@pytest.fixture
def no_fsync(monkeypatch):
    """The crash loops run dozens of whole runs: durability is the journal tests' business, not theirs."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def run_with_crash(fake, crash, guard=crash_after):
    """Start the run and die where ``guard(crash)`` says; then resume it."""
    try:
        with guard(crash):
            upgrade(fake)
        return
    except Crash:
        pass
    if outcome(fake) != "unfinished":
        return  # died after its last record: nothing to resume
    resume(fake)


SMALL = ("canary", "main")  # two hosts, two rings: every kind of record, half the records


def records_of(tmp_path, setup=None, kind=None):
    """How many journal records (of ``kind``) a whole run writes."""
    fake = FakeFleet(tmp_path / f"count-{kind}", SMALL)
    if setup:
        setup(fake)
    try:
        upgrade(fake)
    except RolledBack:
        pass
    return len([r for r in journal(fake).records if kind is None or r.kind is kind])


def test_a_crash_after_any_journal_record_then_resume_ends_upgraded(tmp_path, no_fsync):
    total = records_of(tmp_path)
    for crash in range(1, total + 1):
        fake = FakeFleet(tmp_path / f"crash-{crash}", SMALL)
        run_with_crash(fake, crash)
        assert outcome(fake) == "completed", crash
        assert_all_on(fake, NEW_IMAGE)


def test_a_crash_after_any_action_took_effect_but_before_it_was_journaled_done_then_resume(tmp_path, no_fsync):
    total = records_of(tmp_path, kind=RecordKind.ACTION_DONE)
    for nth in range(1, total + 1):
        fake = FakeFleet(tmp_path / f"crash-{nth}", SMALL)
        run_with_crash(fake, nth, crash_before_done)
        assert outcome(fake) == "completed", nth
        assert_all_on(fake, NEW_IMAGE)


def test_a_crash_at_any_point_of_a_rollback_then_resume_ends_rolled_back(tmp_path, no_fsync):
    def bad(fake):
        fake.host_behaviours[("gpu-02", NEW_IMAGE)] = Behaviour(error_rate=0.5)

    points = [(crash_after, n) for n in range(1, records_of(tmp_path, bad) + 1)]
    points += [(crash_before_done, n) for n in range(1, records_of(tmp_path, bad, RecordKind.ACTION_DONE) + 1)]
    for guard, n in points:
        fake = FakeFleet(tmp_path / f"{guard.__name__}-{n}", SMALL)
        bad(fake)
        with contextlib.suppress(RolledBack):
            run_with_crash(fake, n, guard)
        assert outcome(fake) == "rolled_back", (guard.__name__, n)
        assert_all_on(fake, OLD_IMAGE)


def test_abort_puts_back_what_the_run_changed_and_only_that(tmp_path):
    fake = FakeFleet(tmp_path)
    with pytest.raises(Crash), crash_after(5):  # gpu-01 drained, not yet replaced
        upgrade(fake)
    assert fake.in_router() == set(HOSTS) - {"gpu-01"}
    events = Events()
    assert resume(fake, events, abort=True).finished == "aborted"
    assert [e.get("step") for e in events.named("rollback_step")] == ["undrain"]  # nothing to restore
    assert "restore" not in " ".join(fake.hosts["gpu-01"].log)
    assert_all_on(fake, OLD_IMAGE)


def test_ctrl_c_stops_after_the_current_action_and_the_run_resumes(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    handler = signal.getsignal(signal.SIGINT)
    fake.clock.after(2 + 2 + 1, lambda: os.kill(os.getpid(), signal.SIGINT))  # preflight, healthy, into the bake
    with pytest.raises(KeyboardInterrupt):
        upgrade(fake, events)
    assert signal.getsignal(signal.SIGINT) is handler  # the run's own handler is gone
    assert events[-1] == {"event": "bake", "kind": "bake", "ring": "canary"}  # begun, not done
    assert outcome(fake) == "unfinished"
    assert resume(fake).finished == "completed"
    assert_all_on(fake, NEW_IMAGE)


def test_a_router_that_refuses_a_removal_stops_the_run_and_resume_finishes_it(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.router.refuse_remove = True
    with pytest.raises(RouterError, match="answered 500 to removing"):
        upgrade(fake)
    assert fake.state().is_drained("gpu-01")  # the intent is recorded before the router is asked
    assert fake.images()["gpu-01"] == OLD_IMAGE and outcome(fake) == "unfinished"
    fake.router.refuse_remove = False
    assert resume(fake).finished == "completed"
    assert_all_on(fake, NEW_IMAGE)


def test_a_router_that_refuses_an_add_removes_nothing_and_resume_finishes(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.router.refuse_add = {fake.url("gpu-01")}
    with pytest.raises(RouterError, match="refused to add"):
        upgrade(fake)
    assert fake.in_router() == set(HOSTS) - {"gpu-01"}  # not back in, and nothing else removed
    fake.router.refuse_add = set()
    assert resume(fake).finished == "completed"
    assert_all_on(fake, NEW_IMAGE)


def test_a_router_that_answers_without_an_upstream_it_holds_is_caught_by_the_check_after_sync(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.router.hidden = {fake.url("gpu-01")}
    with pytest.raises(RouterError, match="does not hold the intended upstreams"):
        upgrade(fake)
    fake.router.hidden = set()
    assert resume(fake).finished == "completed"
    assert_all_on(fake, NEW_IMAGE)


def test_counters_reset_by_a_restart_during_the_bake_count_from_zero_not_below(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    fake.clock.after(2 + 2 + 1.5, lambda: (fake.hosts["gpu-01"].restart(), fake.hosts["gpu-03"].restart()))
    assert upgrade(fake, events).finished == "completed"
    canary = events.named("gate")[0]
    requests = next(c for c in canary["checks"] if c["metric"] == "requests")
    assert canary["passed"] and 0 < requests["value"] <= 30  # counted again from 0 after the restart
    baselines = [r.body.gate.baseline for r in journal(fake).records if isinstance(r.body, ActionDone) and r.body.gate]
    assert all(b is None or b["finished"] >= 0 for b in baselines)


@pytest.mark.parametrize("operation", ["replace", "wait_healthy", "ensure_image", "current"])
def test_a_dropped_ssh_connection_is_reopened_and_the_step_repeated(tmp_path, operation):
    fake, events = FakeFleet(tmp_path), Events()
    ports = fake.ports()
    fake.hosts["gpu-02"].drop(operation, after=operation == "replace")
    from fleetctl.services.upgrade import start_run
    from tests.fake.drive import request

    req, plan = request(fake)
    assert start_run(fake.fleet, req, plan, events, ports=ports).finished == "completed"
    assert [(e["host"], e["attempt"]) for e in events.named("reconnect")] == [("gpu-02", 2)]
    assert ports.opened.count("gpu-02") == 2
    assert_all_on(fake, NEW_IMAGE)


def test_a_connection_that_keeps_dropping_fails_the_step_after_three_tries(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    fake.hosts["gpu-02"].drop("replace", times=3)
    with pytest.raises(RolledBack, match="replace failed on gpu-02: disconnected"):
        upgrade(fake, events)
    assert len(events.named("reconnect")) == 2
    assert_all_on(fake, OLD_IMAGE)


def test_a_connection_dropped_during_the_rollback_is_reopened_too(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.host_behaviours[("gpu-01", NEW_IMAGE)] = Behaviour(error_rate=0.5)
    fake.hosts["gpu-01"].drop("restore", after=True)
    with pytest.raises(RolledBack):
        upgrade(fake)
    assert_all_on(fake, OLD_IMAGE)
