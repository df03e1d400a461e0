"""``status`` exit code: the pure judgement of whether the fleet is as intended, row by row."""

import pytest

from fleetctl.core.status import fleet_problems, host_problems, summary_line

ROUTER_OK = {"url": "http://127.0.0.1:30000", "reachable": True, "error": None}
ROUTER_DOWN = {"url": "http://127.0.0.1:30000", "reachable": False, "error": "unreachable: connection refused"}


def row(**fields):
    base = {
        "name": "gpu1",
        "reachable": True,
        "error": None,
        "drained": False,
        "should_serve": True,
        "container": "running",
        "healthy": True,
        "in_router": True,
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "router_known", "expected"),
    [
        ({}, True, []),
        ({"container": "exited", "healthy": False}, True, ["gpu1: should serve but its container is exited"]),
        ({"container": None, "healthy": None}, True, ["gpu1: should serve but runs no fleetctl container"]),
        ({"healthy": False, "error": "http: 503"}, True, ["gpu1: should serve but is unhealthy (http: 503)"]),
        ({"in_router": False}, True, ["gpu1: should serve but is not in the router"]),
        ({"in_router": False}, False, []),  # the router did not answer: membership unknown, reported once
        ({"reachable": False, "error": "unreachable: timed out"}, True, ["gpu1: unreachable: timed out"]),
        ({"reachable": False, "should_serve": False, "error": "auth: denied"}, True, ["gpu1: auth: denied"]),
        ({"should_serve": False, "in_router": False, "container": None}, True, []),  # never deployed
        ({"should_serve": False, "drained": True, "in_router": False, "container": "exited"}, True, []),
        ({"should_serve": False, "drained": True, "in_router": True}, True, ["gpu1: drained but still in the router"]),
        (
            {"container": "exited", "healthy": False, "in_router": False},
            True,
            [
                "gpu1: should serve but its container is exited",
                "gpu1: should serve but is not in the router",
            ],
        ),
    ],
)
def test_host_problems(fields, router_known, expected):
    assert host_problems(row(**fields), router_known=router_known) == expected


def test_an_unreachable_router_comes_first_and_hosts_are_not_blamed_for_it():
    problems = fleet_problems(ROUTER_DOWN, [row(in_router=False), row(name="gpu2", container="exited")])
    assert problems == [
        "router http://127.0.0.1:30000 unreachable: connection refused",
        "gpu2: should serve but its container is exited",
    ]


def test_as_intended_is_no_problem():
    assert fleet_problems(ROUTER_OK, [row(), row(name="gpu2", should_serve=False, in_router=False)]) == []


def test_summary_line_names_the_first_three():
    assert summary_line(["a", "b"]) == "the fleet is not as intended: a; b"
    assert summary_line(list("abcde")) == "the fleet is not as intended: a; b; c and 2 more"
