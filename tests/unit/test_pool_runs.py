"""Upgrades within a pool on the in-memory fleet (tests/fake): only the pool's hosts change, the gate compares
the pool with itself, min_serving is the pool's, and ``--profile`` is written into the pool's table with tomlkit
as the run's last step (a crash before ``run_finished`` and ``--resume`` finishes it)."""

from __future__ import annotations

import dataclasses

import pytest

from fleetctl.core.fleetfile import parse_fleet
from fleetctl.core.gate import GateSettings
from fleetctl.core.records import PoolRun, RecordKind, RunStarted
from fleetctl.errors import UsageError
from fleetctl.services.journal import list_runs
from fleetctl.services.pool_file import digest, write_pool_profile
from fleetctl.services.upgrade import Opening, UpgradeRequest, make_plan, rollout_settings, start_run
from fleetctl.services.upgrade_runs import history
from tests.fake import Behaviour, FakeFleet
from tests.fake.drive import PREFLIGHT_S, Events, _matrix, resume
from tests.fake.fleet import NEW_IMAGE, OLD_IMAGE
from tests.fake.record import Crash, crash_after

POOLS = """
# chat: the big model, two hosts
[[pools]]
name = "chat"   # clients ask for it by this name
profile = "stable"
hosts = "gpu-01,gpu-02"

[[pools]]
name = "small"
profile = "stable-small"
hosts = "gpu-03,gpu-04"
min_serving = 1
"""


def pooled(tmp_path) -> FakeFleet:
    """The fake fleet, its gpu-01/02 the pool chat, gpu-03/04 the pool small (fleet file rewritten to match)."""
    fake = FakeFleet(tmp_path)
    path = tmp_path / "fleet.toml"
    text = path.read_text().replace("min_serving = 1\n", "") + POOLS
    path.write_text(text)
    fake.fleet = dataclasses.replace(fake.fleet, pools=parse_fleet(text, str(path)).pools)
    return fake


def pool_request(fake: FakeFleet, pool: str, profile: str = "next", write: bool = True):
    from fleetctl.services.profiles import load_profile, profile_dirs

    fleet = fake.fleet
    chosen_pool = next(p for p in fleet.pools if p.name == pool)
    dirs = profile_dirs({}, fleet.path)
    import os

    chosen = load_profile(profile, dirs, _matrix(tuple(d for d in dirs if os.path.isdir(os.path.join(d, "matrix")))))
    settings = rollout_settings(fleet, chosen)
    window = Opening(fake.ports().sample_serving(chosen_pool.members), fake.clock.monotonic())
    fake.clock.sleep(PREFLIGHT_S)
    members = tuple(h for h in fleet.hosts if h.name in chosen_pool.members)
    plan, _ = make_plan(fleet, members, settings, chosen_pool)
    gate = GateSettings(max_error_rate=settings.max_error_rate, max_ttft_p95_ratio=settings.max_ttft_p95_ratio)
    run = PoolRun(pool, profile if write else None, digest(fleet.path) if write else None)
    targets = tuple(h for h in fleet.hosts if h.name in plan.hosts)
    return UpgradeRequest(chosen, None, targets, {}, gate, settings.bake_s, window, run), plan


def upgrade_pool(fake: FakeFleet, events: Events, pool: str = "chat", write: bool = True):
    req, plan = pool_request(fake, pool, write=write)
    return start_run(fake.fleet, req, plan, events, ports=fake.ports())


def head(fake: FakeFleet) -> RunStarted:
    body = next(iter(list_runs(fake.fleet.state_dir))).records[0].body
    assert isinstance(body, RunStarted)
    return body


def test_an_upgrade_of_one_pool_touches_only_its_hosts_and_writes_its_profile(tmp_path):
    fake, events = pooled(tmp_path), Events()
    small_containers = {h: fake.hosts[h].current() for h in ("gpu-03", "gpu-04")}
    assert upgrade_pool(fake, events).finished == "completed"
    assert fake.images() == {"gpu-01": NEW_IMAGE, "gpu-02": NEW_IMAGE, "gpu-03": OLD_IMAGE, "gpu-04": OLD_IMAGE}
    assert {h: fake.hosts[h].current() for h in ("gpu-03", "gpu-04")} == small_containers  # the same objects
    assert fake.in_router() == set(fake.hosts)
    text = (tmp_path / "fleet.toml").read_text()
    assert 'name = "chat"   # clients ask for it by this name\nprofile = "next"\n' in text
    assert "# chat: the big model, two hosts" in text and 'profile = "stable-small"' in text
    (note,) = events.named("fleet_file")
    assert note["written"] and note["detail"].endswith('pool chat now declares profile = "next"')
    assert head(fake).pool == PoolRun("chat", "next", head(fake).pool.fleet_sha256)  # type: ignore[union-attr]
    assert history(fake.fleet)[0]["pool"] == "chat"


def test_a_crash_before_run_finished_and_resume_finishes_the_write(tmp_path):
    fake = pooled(tmp_path)
    records = 1 + 2 * 2 * 3 + 2 * 2  # head; per host drain/replace/undrain begun+done; per ring bake/judge
    with crash_after(records), pytest.raises(Crash):
        upgrade_pool(fake, Events())
    assert 'profile = "stable"\nhosts = "gpu-01,gpu-02"' in (tmp_path / "fleet.toml").read_text()
    events = Events()
    assert resume(fake, events).finished == "completed"
    assert 'profile = "next"\nhosts = "gpu-01,gpu-02"' in (tmp_path / "fleet.toml").read_text()
    assert events.named("run_pool") == [{"event": "run_pool", "run_id": head(fake).revision, "pool": "chat"}]
    kinds = [r.kind for r in next(iter(list_runs(fake.fleet.state_dir))).records]
    assert kinds[-1] is RecordKind.RUN_FINISHED and kinds.count(RecordKind.RUN_FINISHED) == 1


def test_a_fleet_file_changed_during_the_run_is_left_alone_and_the_run_says_what_to_change(tmp_path):
    fake, events = pooled(tmp_path), Events()
    req, plan = pool_request(fake, "chat")
    path = tmp_path / "fleet.toml"
    path.write_text(path.read_text() + "\n# edited by someone\n")
    assert start_run(fake.fleet, req, plan, events, ports=fake.ports()).finished == "completed"
    assert 'profile = "stable"\nhosts = "gpu-01,gpu-02"' in path.read_text()
    (note,) = events.named("fleet_file")
    assert not note["written"]
    line = path.read_text().splitlines().index("[[pools]]") + 1
    assert note["detail"] == (
        f'{path}:{line}: the fleet file changed since the run started: set profile = "next" in the [[pools]] table '
        'with name = "chat" by hand'
    )


def test_an_unwritable_fleet_file_is_said_not_raised(tmp_path):
    missing = tmp_path / "gone.toml"
    result = write_pool_profile(str(missing), "chat", "next", None)
    assert not result.written and "cannot read the fleet file" in result.detail and 'profile = "next"' in result.detail


def test_the_gate_compares_a_ring_with_its_own_pool_only(tmp_path):
    fake, events = pooled(tmp_path), Events()
    for host in ("gpu-03", "gpu-04"):  # another model, far faster: its latency says nothing about chat's
        fake.host_behaviours[(host, OLD_IMAGE)] = Behaviour(ttft_s=0.005)
    assert upgrade_pool(fake, events, write=False).finished == "completed"
    assert all(e["passed"] for e in events.named("gate"))
    assert not events.named("fleet_file")


def test_min_serving_is_the_pools_own(tmp_path):
    fake = pooled(tmp_path)
    chat = fake.fleet.pools[0]
    tight = dataclasses.replace(chat, min_serving=2)
    members = tuple(h for h in fake.fleet.hosts if h.name in chat.members)
    with pytest.raises(UsageError, match=r"pool chat: 2 of 2 host\(s\) serving and its min_serving = 2"):
        make_plan(fake.fleet, members, fake.fleet.rollout, tight)
    plan, _ = make_plan(fake.fleet, members, fake.fleet.rollout, chat)
    assert plan.hosts == ("gpu-01", "gpu-02") and plan.batch_size == 1
    forced, _ = make_plan(fake.fleet, members, fake.fleet.rollout, tight, force=True)
    assert forced.hosts == ("gpu-01", "gpu-02") and forced.batch_size == 1


def test_deploy_of_a_pool_takes_its_declared_profile_and_leaves_serving_hosts_alone(tmp_path):
    from fleetctl.core.fleetstate import FleetState
    from fleetctl.errors import ConfigError
    from fleetctl.services.pools import deploy_scope, pool_profiles
    from fleetctl.services.statefile import save_state
    from tests.fake.fleet import PROFILE

    fake = pooled(tmp_path)
    small = PROFILE.format(name="stable-small", image=OLD_IMAGE, model="lab/tiny-llama", port=8000)
    (tmp_path / "profiles" / "stable-small.toml").write_text(small)
    with pytest.raises(ConfigError, match=r"fleet.toml:\d+: pools chat and small both serve model lab/tiny-llama"):
        pool_profiles({}, fake.fleet)
    (tmp_path / "profiles" / "stable-small.toml").write_text(small + 'served_model_name = "small"\n')
    assert {n: p.serve.served_name for n, p in pool_profiles({}, fake.fleet).items()} == {  # type: ignore[union-attr]
        "chat": "lab/tiny-llama",
        "small": "small",
    }
    where = deploy_scope({}, fake.fleet, "small", None, None)
    assert (where.profile.name, where.hosts, where.already) == ("stable-small", (), ("gpu-03", "gpu-04"))
    state = fake.state()
    save_state(fake.fleet, FleetState(serving={h: r for h, r in state.serving.items() if h != "gpu-04"}))
    where = deploy_scope({}, fake.fleet, "small", None, None)
    assert ([h.name for h in where.hosts], where.already) == (["gpu-04"], ("gpu-03",))
