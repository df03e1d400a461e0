"""Pools, pure: the fleet file's [[pools]], each decision that holds per pool, row by row with hand-built inputs."""

from __future__ import annotations

import pytest

from fleetctl.core.fleet import Fleet, Host, Pool, RouterSettings
from fleetctl.core.fleetfile import parse_fleet
from fleetctl.core.fleetstate import DrainRecord, FleetState, ServingRecord
from fleetctl.core.pools import (
    check_pools_min_serving,
    chosen_pool,
    duplicate_served_name,
    pool_by_host,
    pool_count,
    pool_rows,
    pools_of,
    rename_refusal,
    served_names,
    spares,
    strays,
)
from fleetctl.core.serve import ServeSettings, container_spec
from fleetctl.core.serve import served_names as args_names
from fleetctl.errors import ConfigError, UsageError

FLEET = """[fleet]
name = "t"
[[hosts]]
name = "a1"
labels = { pool = "chat" }
[[hosts]]
name = "a2"
labels = { pool = "chat" }
[[hosts]]
name = "b1"
[[hosts]]
name = "spare"
# the chat model
[[pools]]
name = "chat"
profile = "big"
hosts = "label=pool=chat"
min_serving = 2
[[pools]]
name = "small"
profile = "little"
hosts = "b*"
"""


def fleet() -> Fleet:
    return parse_fleet(FLEET, "f.toml")


def record(host: str, profile: str = "big", model: str = "chat") -> ServingRecord:
    return ServingRecord(host, f"http://{host}:8000", profile, "img", "r1", "2026-11-30T00:00:00Z", model)


def state(*records: ServingRecord, drained: tuple[str, ...] = ()) -> FleetState:
    s = FleetState()
    for r in records:
        s = s.with_serving(r)
    for h in drained:
        s = s.with_drained(DrainRecord(h, "why", "me", "2026-11-30T00:00:00Z"))
    return s


def test_pools_parse_with_their_members_min_serving_and_line():
    f = fleet()
    assert [(p.name, p.profile, p.members, p.min_serving, p.line) for p in f.pools] == [
        ("chat", "big", ("a1", "a2"), 2, 14),
        ("small", "little", ("b1",), 1, 19),
    ]
    assert spares(f) == ("spare",)
    assert {h: p.name for h, p in pool_by_host(f).items()} == {"a1": "chat", "a2": "chat", "b1": "small"}


def test_a_fleet_without_pools_is_one_implicit_pool_of_every_host():
    f = Fleet("t", "f.toml", (Host("a", "a"), Host("b", "b")), router=RouterSettings(min_serving=1))
    (only,) = pools_of(f)
    assert (only.name, only.members, only.min_serving) == ("", ("a", "b"), 1)
    assert spares(f) == () and strays(f, state(record("a", "x"))) == {}
    assert chosen_pool(f, None, "deploy") is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (FLEET.replace('hosts = "b*"', 'hosts = "b*,a2"'), 22, "host a2 is in two pools: chat (line 14) and small"),
        (FLEET.replace('hosts = "b*"', 'hosts = "c*"'), 22, 'pool small: hosts = "c*" selects no host'),
        (FLEET.replace('name = "small"', 'name = "chat"'), 20, "duplicate pool name chat (first at line 14)"),
        (FLEET.replace("[[hosts]]", "[router]\nmin_serving = 1\n[[hosts]]", 1), 4, "[router] min_serving cannot"),
    ],
)
def test_bad_pools_are_file_and_line_errors(text, line, message):
    with pytest.raises(ConfigError) as e:
        parse_fleet(text, "f.toml")
    assert str(e.value).startswith(f"f.toml:{line}: {message}")


def test_a_command_on_a_fleet_with_pools_needs_one():
    with pytest.raises(UsageError, match=r"upgrade: this fleet has pools \(chat, small\)"):
        chosen_pool(fleet(), None, "upgrade")
    assert chosen_pool(fleet(), "small", "upgrade").name == "small"  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"no such pool \(pools: chat, small\)"):
        chosen_pool(fleet(), "big", "upgrade")


@pytest.mark.parametrize(
    ("drain", "drained", "force", "refused"),
    [
        (
            ["a1"],
            (),
            False,
            "pool chat: draining a1 would leave 1 of 2 host(s) serving (now 2), below its min_serving = 2",
        ),
        (["a1"], (), True, None),
        (
            ["b1"],
            (),
            False,
            "pool small: draining b1 would leave 0 of 1 host(s) serving (now 1), below its min_serving = 1",
        ),
        (["b1"], ("a1",), True, None),  # chat is below already: draining in small does not touch it
    ],
)
def test_drain_holds_min_serving_per_pool(drain, drained, force, refused):
    s = state(record("a1"), record("a2"), record("b1", "little", "small"), drained=drained)
    if refused is None:
        check_pools_min_serving(fleet(), s, drain, force=force)
        return
    with pytest.raises(UsageError) as e:
        check_pools_min_serving(fleet(), s, drain, force=force)
    assert e.value.message == refused


def test_drain_within_room_of_another_pool_is_allowed():
    f = parse_fleet(FLEET.replace("min_serving = 2", "min_serving = 1"), "f.toml")
    s = state(record("a1"), record("a2"), record("b1", "little", "small"))
    assert check_pools_min_serving(f, s, ["a1"], force=False) == 2


def test_counts_and_strays():
    s = state(record("a1"), record("a2", "other"), record("spare", "x"), drained=("a1",))
    chat = fleet().pools[0]
    count = pool_count(chat, s)
    assert (count.serving, count.drained, count.total) == (1, 1, 2)
    assert strays(fleet(), s) == {"a2": "runs other, pool chat declares big", "spare": "runs x but is in no pool"}
    assert served_names(chat, s) == ("chat",)


def test_status_rows_sum_each_pool():
    s = state(record("a1"), record("a2"), record("b1", "little", "small"))
    hosts = [
        {"name": "a1", "profile": "big", "image": "i1", "requests_running": 2.0, "requests_waiting": 1.0},
        {"name": "a2", "profile": "big", "image": "i1", "requests_running": 3.0, "requests_waiting": None},
        {"name": "b1", "profile": "little", "image": "i2", "requests_running": None, "requests_waiting": None},
    ]
    chat, small = pool_rows(fleet(), s, hosts)
    assert chat["models"] == ["chat"] and chat["profiles"] == {"big": 2} and chat["images"] == {"i1": 2}
    assert (chat["serving"], chat["total"], chat["min_serving"]) == (2, 2, 2)
    assert (chat["requests_running"], chat["requests_waiting"]) == (5.0, 1.0)
    assert small["requests_running"] is None and small["models"] == ["small"] and small["off_profile"] == {}


@pytest.mark.parametrize(
    ("now", "new", "rename", "refused"),
    [
        (("chat",), "chat", False, False),
        (("chat",), "chat2", False, True),
        (("chat",), "chat2", True, False),
        ((), "chat2", False, False),  # nothing serves yet
    ],
)
def test_an_upgrade_that_renames_the_model_needs_rename(now, new, rename, refused):
    pool = Pool("chat", "big", "*", ("a1",))
    assert (rename_refusal(pool, now, new, rename=rename) is not None) == refused


def test_two_pools_serving_one_name():
    assert duplicate_served_name({"a": "m", "b": "n"}) is None
    assert duplicate_served_name({"a": "m", "b": "n", "c": "m"}) == ("a", "c", "m")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((), ()),
        (("--served-model-name", "chat"), ("chat",)),
        (("--served-model-name", "chat", "alias", "--max-model-len", "4096"), ("chat", "alias")),
        (("--served-model-name=chat",), ("chat",)),
        (("--max-model-len", "4096"), ()),
    ],
)
def test_served_names_in_args(args, names):
    assert args_names(args) == names


def test_the_served_name_is_the_routing_name_and_reaches_the_command():
    assert ServeSettings(model="m").served_name == "m"
    assert ServeSettings(model="m", args=("--served-model-name", "c", "d")).served_name == "c"
    named = ServeSettings(model="m", served_model_name="c")
    assert named.served_name == "c"
    spec = container_spec("p", "img", named, "r1", {})
    assert spec.command[-2:] == ("--served-model-name", "c")
    both = ServeSettings(model="m", served_model_name="c", args=("--served-model-name", "c"))
    assert container_spec("p", "img", both, "r1", {}).command.count("--served-model-name") == 1
