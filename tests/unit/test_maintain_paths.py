"""The maintenance executor through every path ``fleetctl.core.maintain.decide`` can take, on the in-memory fleet
(tests/fake, tests/fake/maintain.py): seconds, no root. Each test checks where the fleet ends up: containers,
router, state records, the journal's outcome, the commands each host ran and how often it rebooted."""

import os

import pytest

from fleetctl.core.records import ActionBegin, ActionDone, RecordKind
from fleetctl.errors import ExitCode, Halted
from fleetctl.services.journal import list_runs
from tests.fake import Behaviour, FakeFleet
from tests.fake.drive import Events
from tests.fake.drive_maintain import UPDATE, maintain, resume, settings
from tests.fake.fleet import OLD_IMAGE
from tests.fake.maintain import NEWER, REBOOT_S, TOO_OLD, Command, FakeMaintenance, driver_update
from tests.fake.record import Crash, crash_after, crash_before_done

TWO_RINGS = ("canary", "main", "main")  # gpu-01 | gpu-02, gpu-03 (one at a time: max_parallel 1)
SMALL = ("canary", "main")  # the crash loops: two hosts, every kind of record


def fleet(root, rings=TWO_RINGS):
    fake = FakeFleet(root, rings)
    hosts = FakeMaintenance(fake)
    hosts.rules[UPDATE] = driver_update(NEWER)
    return fake, hosts


def records(fake):
    return next(iter(list_runs(fake.fleet.state_dir))).records


def outcome(fake):
    finished = [r.body.outcome.value for r in records(fake) if r.kind is RecordKind.RUN_FINISHED]
    return finished[-1] if finished else "unfinished"


def serving(fake, name):
    """In the router, its container running, recorded serving and not drained."""
    state = fake.state()
    running = fake.images()[name] == OLD_IMAGE
    return running and fake.router.holds(fake.url(name)) and name in state.serving and not state.is_drained(name)


def drained(fake, name):
    """Out of the router and recorded drained (its container stopped: nothing serves from it)."""
    return not fake.router.holds(fake.url(name)) and fake.state().is_drained(name) and fake.images()[name] is None


def untouched(fake, hosts, name):
    return serving(fake, name) and hosts.machines[name].commands == [] and hosts.machines[name].reboots == 0


def test_a_run_over_two_rings_updates_every_host_once_and_every_host_serves_again(tmp_path):
    fake, hosts = fleet(tmp_path)
    events = Events()
    assert maintain(fake, hosts, events, expect=(f"driver={NEWER}",), sudo=True).finished == "completed"
    assert hosts.steps("run") == hosts.steps("reboot") == hosts.steps("back") == ["gpu-01", "gpu-02", "gpu-03"]
    for name, machine in hosts.machines.items():
        assert machine.commands == [UPDATE] and machine.sudo == [True] and machine.reboots == 1, name
        assert machine.driver_loaded == NEWER and serving(fake, name), name
    assert not fake.state().drained and fake.in_router() == set(hosts.machines)
    assert [e["ring"] for e in events.named("gate")] == ["canary", "main"]
    logs = [e["log"] for e in events.named("command")]
    assert len(logs) == 3 and all("# exit status: 0" in open(p).read() for p in logs)


def test_a_failing_command_halts_with_the_host_drained_and_resume_needs_rerun_to_run_it_again(tmp_path):
    fake, hosts = fleet(tmp_path)
    hosts.host_rules[("gpu-02", UPDATE)] = Command(status=3, output="E: dpkg was interrupted\n")
    with pytest.raises(Halted, match=r"gpu-02: run\.0: command_failed: command 1 exited 3: E: dpkg") as e:
        maintain(fake, hosts)
    assert e.value.exit_code == ExitCode.HALTED == 7
    assert drained(fake, "gpu-02") and serving(fake, "gpu-01") and untouched(fake, hosts, "gpu-03")
    assert hosts.machines["gpu-02"].reboots == 0 and outcome(fake) == "unfinished"
    hosts.host_rules[("gpu-02", UPDATE)] = driver_update(NEWER)  # a person fixed dpkg
    with pytest.raises(Halted, match=r"began and was not journaled as finished.*--rerun"):
        resume(fake, hosts)
    assert hosts.machines["gpu-02"].commands == [UPDATE] and drained(fake, "gpu-02")
    assert resume(fake, hosts, rerun=True).finished == "completed"
    assert hosts.machines["gpu-02"].commands == [UPDATE, UPDATE] and hosts.machines["gpu-02"].reboots == 1
    assert all(serving(fake, n) for n in hosts.machines) and not fake.state().drained


@pytest.mark.parametrize(
    ("expect", "match"),
    [
        ((), r"gpu-02: verify: check_failed: against stable: driver_for_cuda: driver 560\.35\.05 < 570"),
        ((f"driver={NEWER}",), r"gpu-02: verify: expectation_unmet: driver is 560\.35\.05, expected 575\.57\.08"),
    ],
)
def test_a_driver_too_old_halts_at_verify_and_resume_after_a_person_fixed_it_runs_nothing_again(
    tmp_path, expect, match
):
    fake, hosts = fleet(tmp_path)
    hosts.host_rules[("gpu-02", UPDATE)] = driver_update(TOO_OLD)
    with pytest.raises(Halted, match=match):
        maintain(fake, hosts, expect=expect)
    assert drained(fake, "gpu-02") and untouched(fake, hosts, "gpu-03") and outcome(fake) == "unfinished"
    machine = hosts.machines["gpu-02"]
    machine.driver_installed = machine.fabric_manager = NEWER  # a person installs the right driver, reboots
    hosts.reboot(machine)
    fake.clock.sleep(REBOOT_S)
    assert resume(fake, hosts).finished == "completed"
    assert machine.commands == [UPDATE] and machine.driver_loaded == NEWER
    assert hosts.steps("reboot").count("gpu-02") == 2  # the run's and the person's: the run did not reboot again
    assert all(serving(fake, n) for n in hosts.machines)


def test_a_driver_installed_without_a_reboot_fails_verify_as_a_version_mismatch(tmp_path):
    fake, hosts = fleet(tmp_path)
    with pytest.raises(
        Halted, match=r"gpu-01: verify: check_failed: against stable: driver_loaded: driver installed but not loaded"
    ):
        maintain(fake, hosts, reboot=False)
    assert drained(fake, "gpu-01") and untouched(fake, hosts, "gpu-02")


def test_a_host_that_never_comes_back_halts_at_back_and_resume_waits_again(tmp_path):
    fake, hosts = fleet(tmp_path)
    hosts.machines["gpu-01"].reboot_s = None
    with pytest.raises(Halted, match=r"gpu-01: back: reboot_timeout: not back with a new boot id within 900s"):
        maintain(fake, hosts)
    assert drained(fake, "gpu-01") and untouched(fake, hosts, "gpu-02")
    hosts.come_back(hosts.machines["gpu-01"])  # a person powered it on
    assert resume(fake, hosts).finished == "completed"
    assert [m.reboots for m in hosts.machines.values()] == [1, 1, 1]


def test_a_ring_that_fails_its_gate_halts_with_its_hosts_drained(tmp_path):
    fake, hosts = fleet(tmp_path)

    def bad(name):
        fake.host_behaviours[(name, OLD_IMAGE)] = Behaviour(error_rate=0.5)

    hosts.host_rules[("gpu-01", UPDATE)] = driver_update(NEWER, effect=bad)
    with pytest.raises(Halted, match=r"halted at the gate of ring canary: gate: error_rate: .*; drained: gpu-01"):
        maintain(fake, hosts)
    assert fake.state().is_drained("gpu-01") and not fake.router.holds(fake.url("gpu-01"))
    assert untouched(fake, hosts, "gpu-02") and untouched(fake, hosts, "gpu-03")
    assert outcome(fake) == "unfinished"


def test_a_failed_gate_keeps_serving_a_host_the_pools_min_serving_needs(tmp_path):
    fake, hosts = fleet(tmp_path, SMALL)
    for name in ("gpu-01", "gpu-02"):
        hosts.host_rules[(name, UPDATE)] = driver_update(NEWER)
    fake.behaviours[OLD_IMAGE] = Behaviour(error_rate=0.5)  # every host fails requests: no host left to compare
    with pytest.raises(Halted, match=r"ring canary: gate: .*drained: gpu-01") as e:
        maintain(fake, hosts, limit=("gpu-01",))
    assert "still serving" not in str(e.value)  # gpu-02 serves: min_serving 1 holds with gpu-01 out
    assert fake.state().is_drained("gpu-01") and serving(fake, "gpu-02")


def test_two_hosts_of_a_batch_reboot_side_by_side(tmp_path):
    fake, hosts = fleet(tmp_path, ("canary", "main", "main"))
    settings(fake, max_parallel=2)
    events = Events()
    assert maintain(fake, hosts, events).finished == "completed"
    main = [(e["host"], e["step"]) for e in events.named("maintain_step") if e["host"] in ("gpu-02", "gpu-03")]
    reboots = [main.index((h, "reboot")) for h in ("gpu-02", "gpu-03")]
    backs = [main.index((h, "back")) for h in ("gpu-02", "gpu-03")]
    assert max(reboots) < min(backs)
    assert [w for _, h, w in hosts.log if h != "gpu-01" and w != "run"] == ["reboot", "reboot", "back", "back"]
    assert all(serving(fake, n) for n in hosts.machines)


# -- crashes and aborts -------------------------------------------------------------------------------------------


@pytest.fixture
def no_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def count(tmp_path, kind=None):
    """How many journal records (of ``kind``) a whole run of the SMALL fleet writes."""
    fake, hosts = fleet(tmp_path / f"count-{kind}", SMALL)
    maintain(fake, hosts)
    return len([r for r in records(fake) if kind is None or r.kind is kind])


def crash_then_resume(fake, hosts, guard, n):
    """Start the run and die where ``guard(n)`` says; resume it (``--rerun`` only where it halts on a begun
    command). Returns the host whose command ``--rerun`` ran again, if any."""
    try:
        with guard(n):
            maintain(fake, hosts)
        return None
    except Crash:
        pass
    if outcome(fake) != "unfinished":
        return None
    try:
        resume(fake, hosts)
        return None
    except Halted as e:
        assert "began and was not journaled as finished" in str(e), (guard.__name__, n, str(e))
        halted = str(e).split(" halted at ")[1].split(":")[0]
    resume(fake, hosts, rerun=True)
    return halted


@pytest.mark.parametrize("guard", [crash_after, crash_before_done])
def test_a_crash_after_any_record_then_resume_completes_rebooting_each_host_once(tmp_path, no_fsync, guard):
    kind = RecordKind.ACTION_DONE if guard is crash_before_done else None
    reruns = []
    for n in range(1, count(tmp_path, kind) + 1):
        fake, hosts = fleet(tmp_path / f"{guard.__name__}-{n}", SMALL)
        reran = crash_then_resume(fake, hosts, guard, n)
        reruns += [reran] if reran else []
        assert reran is None or records(fake)[-1].kind is RecordKind.RUN_FINISHED
        assert outcome(fake) == "completed", (guard.__name__, n)
        for name, machine in hosts.machines.items():
            assert machine.reboots == 1 and machine.driver_loaded == NEWER, (guard.__name__, n, name)
            ran_twice = reran == name and guard is crash_before_done  # it ran, then died before its done record
            assert machine.commands == [UPDATE] * (2 if ran_twice else 1), (guard.__name__, n, name)
            assert serving(fake, name), (guard.__name__, n, name)
        assert not fake.state().drained
    assert reruns == ["gpu-01", "gpu-02"]  # only a crash between a command's begin and its done needs --rerun


def position(tmp_path, kind, step):
    """The number of gpu-01's first ``kind`` record of ``step`` in a whole run of the SMALL fleet."""
    fake, hosts = fleet(tmp_path / f"at-{step}", SMALL)
    maintain(fake, hosts)
    for number, record in enumerate(records(fake), 1):
        body = record.body
        if isinstance(body, kind) and body.ref.host == "gpu-01" and body.ref.step == step:
            return number
    raise AssertionError(f"no {kind.__name__} of {step}")


@pytest.mark.parametrize(
    ("kind", "step", "put_back"),
    [
        (None, None, True),  # only the head: nothing touched
        (ActionDone, "drain", True),  # drained only
        (ActionDone, "stop", True),  # its container stopped
        (ActionBegin, "run.0", False),  # its command begun: it may have run
        (ActionDone, "reboot", False),  # going down
        (ActionDone, "undrain", False),  # maintained and serving again: nothing to put back, nothing to name
    ],
)
def test_abort_puts_back_a_host_whose_commands_did_not_begin_and_names_the_others(tmp_path, kind, step, put_back):
    crash = 1 if kind is None else position(tmp_path, kind, step)
    fake, hosts = fleet(tmp_path / "run", SMALL)
    with pytest.raises(Crash), crash_after(crash):
        maintain(fake, hosts)
    events = Events()
    if step == "undrain":
        assert resume(fake, hosts, events, abort=True).finished == "aborted"
        assert serving(fake, "gpu-01") and hosts.machines["gpu-01"].commands == [UPDATE]
        assert not events.named("restore_step")
    elif put_back:
        assert resume(fake, hosts, events, abort=True).finished == "aborted"
        assert serving(fake, "gpu-01") and hosts.machines["gpu-01"].commands == []
    else:
        with pytest.raises(Halted, match=r"aborted; gpu-01 stay drained: their commands ran") as e:
            resume(fake, hosts, events, abort=True)
        assert e.value.exit_code == ExitCode.HALTED
        assert fake.state().is_drained("gpu-01") and not fake.router.holds(fake.url("gpu-01"))
        assert not [e for e in events.named("restore_step") if e["host"] == "gpu-01"]
    assert outcome(fake) == "aborted" and untouched(fake, hosts, "gpu-02")
    assert hosts.machines["gpu-01"].reboots == (1 if step in ("reboot", "undrain") else 0)


def test_abort_after_a_failed_gate_names_the_hosts_the_gate_drained(tmp_path):
    fake, hosts = fleet(tmp_path)

    def bad(name):
        fake.host_behaviours[(name, OLD_IMAGE)] = Behaviour(error_rate=0.5)

    hosts.host_rules[("gpu-01", UPDATE)] = driver_update(NEWER, effect=bad)
    with pytest.raises(Halted, match="gate of ring canary"):
        maintain(fake, hosts)
    with pytest.raises(Halted, match=r"aborted; gpu-01 stay"):
        resume(fake, hosts, abort=True)
    assert fake.state().is_drained("gpu-01") and outcome(fake) == "aborted"


def test_a_host_that_rebooted_while_fleetctl_was_dead_is_not_rebooted_again(tmp_path):
    fake, hosts = fleet(tmp_path, SMALL)
    reboot_done = 5  # after the done records of drain, stop, run.0 and boot_id: the reboot sent, not journaled
    with pytest.raises(Crash), crash_before_done(reboot_done):
        maintain(fake, hosts)
    assert hosts.machines["gpu-01"].reboots == 1 and not hosts.machines["gpu-01"].up
    fake.clock.sleep(REBOOT_S * 2)  # it came back while nobody watched
    events = Events()
    assert resume(fake, hosts, events).finished == "completed"
    assert [e["detail"] for e in events.named("reboot")] == ["already rebooted", "going down"]  # gpu-01, gpu-02
    assert [m.reboots for m in hosts.machines.values()] == [1, 1]
    assert all(serving(fake, n) for n in hosts.machines)


def test_abort_after_a_failed_gate_leaves_unnamed_a_host_a_person_undrained(tmp_path):
    from fleetctl.services.serving import undrain_hosts

    fake, hosts = fleet(tmp_path)
    hosts.host_rules[("gpu-01", UPDATE)] = driver_update(
        NEWER, effect=lambda name: fake.host_behaviours.update({(name, OLD_IMAGE): Behaviour(error_rate=0.5)})
    )
    with pytest.raises(Halted, match="gate of ring canary"):
        maintain(fake, hosts)
    undrain_hosts(fake.ports(), ["gpu-01"], Events(), serving=None)  # a person looked and put it back
    assert resume(fake, hosts, abort=True).finished == "aborted"
    assert serving(fake, "gpu-01") and untouched(fake, hosts, "gpu-02")


def test_a_host_a_person_drained_is_maintained_kept_drained_and_left_out_of_its_rings_gate(tmp_path):
    from fleetctl.core.fleetstate import DrainRecord

    fake, hosts = fleet(tmp_path)
    person = DrainRecord("gpu-02", "disk check", "ops", "2026-11-30T07:00:00Z")
    fake.ports().update_state(lambda state: state.with_drained(person))
    fake.ports().sync_router()
    events = Events()
    assert maintain(fake, hosts, events).finished == "completed"
    assert hosts.machines["gpu-02"].commands == [UPDATE] and hosts.machines["gpu-02"].reboots == 1
    assert fake.state().drained["gpu-02"] == person and not fake.router.holds(fake.url("gpu-02"))
    assert serving(fake, "gpu-01") and serving(fake, "gpu-03")
    main = next(e for e in events.named("gate") if e["ring"] == "main")
    assert all(c["hosts"] == ["gpu-03"] for c in main["checks"] if "hosts" in c)


def test_a_connection_lost_during_a_command_is_never_reconnected_and_run_again_blindly(tmp_path):
    fake, hosts = fleet(tmp_path)
    hosts.host_rules[("gpu-01", UPDATE)] = driver_update(NEWER, drops=True)
    with pytest.raises(Halted, match=r"gpu-01: run\.0: disconnected"):
        maintain(fake, hosts)
    assert hosts.machines["gpu-01"].commands == [UPDATE] and drained(fake, "gpu-01")
    with pytest.raises(Halted, match="began and was not journaled as finished"):
        resume(fake, hosts)
    hosts.host_rules[("gpu-01", UPDATE)] = driver_update(NEWER)
    assert resume(fake, hosts, rerun=True).finished == "completed"
    assert hosts.machines["gpu-01"].commands == [UPDATE, UPDATE] and hosts.machines["gpu-01"].reboots == 1


@pytest.mark.parametrize("operation", ["stop", "start", "wait_healthy"])
def test_a_connection_dropped_during_a_container_step_is_reopened_and_the_step_repeated(tmp_path, operation):
    fake, hosts = fleet(tmp_path)
    fake.hosts["gpu-02"].drop(operation, after=True)
    events = Events()
    assert maintain(fake, hosts, events).finished == "completed"
    assert [(e["host"], e["attempt"]) for e in events.named("reconnect")] == [("gpu-02", 2)]
    assert all(serving(fake, n) for n in hosts.machines)


def test_a_spare_host_is_maintained_without_a_container_or_a_gate(tmp_path):
    fake, hosts = fleet(tmp_path, ("canary", "main", "spare"))
    fake.hosts["gpu-03"].containers.clear()
    fake.ports().update_state(lambda state: state.without_serving("gpu-03"))
    fake.ports().sync_router()
    events = Events()
    assert maintain(fake, hosts, events).finished == "completed"
    steps = [e["step"] for e in events.named("maintain_step") if e["host"] == "gpu-03"]
    assert steps == ["drain", "run.0", "boot_id", "reboot", "back", "verify", "undrain"]
    assert [e["ring"] for e in events.named("gate")] == ["canary", "main"]  # ring spare: nothing to judge
    assert hosts.machines["gpu-03"].driver_loaded == NEWER and not fake.state().drained
    assert fake.hosts["gpu-03"].containers == {} and serving(fake, "gpu-01") and serving(fake, "gpu-02")
