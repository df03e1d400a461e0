"""Router planning as pure functions: the sync diff, URL normalising, mismatch wording, launch arguments."""

from __future__ import annotations

import pytest

from fleetctl.core.router import RouterDiff, describe_mismatch, normalise_url, plan_launch, plan_sync, router_address

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"


@pytest.mark.parametrize(
    "current, intended, add, remove",
    [
        (set(), set(), (), ()),
        ({A, B}, {A, B}, (), ()),
        (set(), {B, A}, (A, B), ()),
        ({A, B, C}, {A}, (), (B, C)),
        ({A, B}, {B, C}, (C,), (A,)),
        ({A + "/"}, {A}, (), ()),  # the same worker, spelled with a slash
        ({A}, {A + "/"}, (), ()),
        ({A, A + "/"}, {A}, (), (A + "/",)),  # two spellings are two workers to the router
        ({A + "/", A + "//"}, {A}, (), (A + "//",)),  # keep one existing spelling, drop the rest
        ({A + "/", A + "//"}, set(), (), (A + "/", A + "//")),
        ({"HTTP://GPU-A01:8000"}, {"http://gpu-a01:8000"}, (), ()),
        ({"http://[fd00::1]:8000/"}, {"http://[fd00::1]:8000"}, (), ()),
    ],
)
def test_plan_sync_rows(current, intended, add, remove):
    diff = plan_sync(current, intended)
    assert (diff.add, diff.remove) == (add, remove)
    assert diff.empty == (not add and not remove)


def test_plan_sync_is_sorted_and_deterministic_whatever_the_input_order():
    urls = [f"http://10.0.0.{i}:8000" for i in (9, 3, 12, 1)]
    first = plan_sync(urls[:2], urls[2:])
    assert first == plan_sync(list(reversed(urls[:2])), list(reversed(urls[2:])))
    assert first.add == ("http://10.0.0.12:8000", "http://10.0.0.1:8000")  # plain string order
    assert first.remove == ("http://10.0.0.3:8000", "http://10.0.0.9:8000")


def test_removals_name_the_routers_own_spelling_and_adds_the_normal_one():
    diff = plan_sync({"http://10.0.0.7:8000/"}, {"http://10.0.0.8:8000/"})
    assert diff == RouterDiff(add=("http://10.0.0.8:8000",), remove=("http://10.0.0.7:8000/",))
    assert diff.to_dict() == {"add": ["http://10.0.0.8:8000"], "remove": ["http://10.0.0.7:8000/"]}


@pytest.mark.parametrize(
    "url, normal",
    [
        ("http://10.0.0.1:8000/", "http://10.0.0.1:8000"),
        (" http://10.0.0.1:8000 ", "http://10.0.0.1:8000"),
        ("HTTP://Host.Example:8000/", "http://host.example:8000"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("http://h:8000/?x=1#f", "http://h:8000"),
    ],
)
def test_normalise_url(url, normal):
    assert normalise_url(url) == normal


def test_describe_mismatch_names_missing_and_unexpected():
    assert describe_mismatch([A, B + "/"], {A, B}) is None
    assert describe_mismatch([A, C], {A, B}) == f"missing {B}; unexpected {C}"
    assert describe_mismatch([], {A}) == f"missing {A}"


def test_plan_launch_arguments():
    launch = plan_launch("http://127.0.0.1:30000", {B, A + "/"}, metrics_port=41000)
    args = list(launch.args)
    assert (launch.host, launch.port) == ("127.0.0.1", 30000)
    assert args[args.index("--host") + 1] == "127.0.0.1" and args[args.index("--port") + 1] == "30000"
    assert args[args.index("--policy") + 1] == "round_robin"
    assert args[args.index("--prometheus-port") + 1] == "41000"
    assert args[args.index("--worker-urls") + 1 :] == [A, B]


def test_plan_launch_with_no_upstreams_passes_no_worker_urls():
    assert "--worker-urls" not in plan_launch("http://127.0.0.1:30000", set(), metrics_port=41000).args


@pytest.mark.parametrize(
    "url, address",
    [
        ("http://127.0.0.1:30000", ("127.0.0.1", 30000)),
        ("http://localhost", ("localhost", 80)),
        ("http://[::1]:30000/", ("::1", 30000)),
    ],
)
def test_router_address(url, address):
    assert router_address(url) == address


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:30000", "http://127.0.0.1:30000/api", "127.0.0.1:30000", "http://127.0.0.1:notaport"]
)
def test_router_address_refuses_what_fleetctl_cannot_start(url):
    with pytest.raises(ValueError):
        router_address(url)
