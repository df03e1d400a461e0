"""Pure state decisions: how many hosts stay serving after a drain, the min_serving rule, ports of serving URLs,
and state.json refusing a serving URL without a port."""

from __future__ import annotations

import re

import pytest

from fleetctl.core.fleetstate import (
    STATE_SCHEMA,
    DrainRecord,
    FleetState,
    ServingRecord,
    StateError,
    check_min_serving,
    serving_after_drain,
    url_port,
)
from fleetctl.errors import UsageError


def state(serving: dict[str, str], drained: tuple[str, ...] = ()) -> FleetState:
    s = FleetState()
    for host, url in serving.items():
        s = s.with_serving(ServingRecord(host, url, "p", "i", "r1", "2026-01-01T00:00:00Z"))
    for host in drained:
        s = s.with_drained(DrainRecord(host, "why", "who", "2026-01-01T00:00:00Z"))
    return s


THREE = {"a": "http://10.0.0.1:8000", "b": "http://10.0.0.2:8000", "c": "http://10.0.0.3:8000"}


@pytest.mark.parametrize(
    ("serving", "drained", "names", "left"),
    [
        (THREE, (), [], 3),
        (THREE, (), ["a"], 2),
        (THREE, ("c",), ["a"], 1),  # already drained hosts stay out
        (THREE, ("a",), ["a"], 2),  # draining a drained host again changes nothing
        (THREE, (), ["a", "b", "c"], 0),
        (THREE, (), ["zz"], 3),  # a name that serves nothing
        ({"a": "http://h:8000", "b": "http://h:8000"}, (), ["a"], 1),  # one URL, one upstream
        ({}, (), ["a"], 0),
    ],
)
def test_serving_after_drain(serving, drained, names, left):
    assert serving_after_drain(state(serving, drained), names) == left


@pytest.mark.parametrize(
    ("names", "min_serving", "force", "result"),
    [
        (["a"], 1, False, 2),
        (["a", "b"], 1, False, 1),
        (["a", "b"], 2, False, "would leave 1 host(s) serving, below [router] min_serving = 2"),
        (["a", "b", "c"], 1, False, "draining a, b, c would leave 0 host(s) serving"),
        (["a", "b", "c"], 1, True, 0),  # --force: the count, no refusal
        ([], 4, False, "would leave 3 host(s) serving, below [router] min_serving = 4"),
    ],
)
def test_check_min_serving(names, min_serving, force, result):
    if isinstance(result, int):
        assert check_min_serving(state(THREE), names, min_serving, force=force) == result
    else:
        with pytest.raises(UsageError, match=re.escape(result)) as e:
            check_min_serving(state(THREE), names, min_serving, force=force)
        assert e.value.hint == "use --force if you mean it"


def test_check_min_serving_touches_no_state():
    before = state(THREE, ("c",))
    check_min_serving(before, ["a"], 1, force=False)
    assert before == state(THREE, ("c",)) and set(before.drained) == {"c"}


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://10.0.0.1:8000", 8000),
        ("http://10.0.0.1:8000/", 8000),
        ("http://[fd00::1]:8001", 8001),
        ("http://[fe80::1%25eth0]:9000/v1", 9000),
        ("http://gpu-01", 80),
        ("https://gpu-01", 443),
        ("http://gpu-01/", 80),
    ],
)
def test_url_port(url, port):
    assert url_port(url) == port


@pytest.mark.parametrize("url", ["http://gpu-01:abc", "http://gpu-01:99999", "gpu-01", "ftp://gpu-01"])
def test_url_port_refuses_what_names_no_port(url):
    with pytest.raises(ValueError):
        url_port(url)


def doc(url: str) -> dict:
    record = {"url": url, "profile": "p", "image": "i", "revision": "r1", "since": "2026-01-01T00:00:00Z"}
    return {"schema": STATE_SCHEMA, "serving": {"gpu-01": record}}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://10.0.0.1", "serving.gpu-01: url 'http://10.0.0.1' has no port (fleetctl writes http://ADDRESS:PORT)"),
        ("http://10.0.0.1/", "has no port"),
        ("http://10.0.0.1:80x", "serving.gpu-01: url 'http://10.0.0.1:80x' has a bad port"),
        ("http://10.0.0.1:70000", "has a bad port"),
    ],
)
def test_state_refuses_a_serving_url_without_a_good_port(url, words):
    with pytest.raises(StateError) as e:
        FleetState.from_dict(doc(url))
    assert words in str(e.value)


def test_state_reads_a_serving_url_with_its_port():
    assert FleetState.from_dict(doc("http://10.0.0.1:8000")).serving["gpu-01"].url == "http://10.0.0.1:8000"
