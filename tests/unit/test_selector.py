"""--limit: name globs, ring= and label= selectors, unions; fleet order kept; a term that matches nothing refused."""

import pytest

from fleetctl.core.fleet import Host
from fleetctl.core.selector import parse_pattern, select_hosts
from fleetctl.errors import ExitCode, UsageError

HOSTS = (
    Host("gpu-a01", "10.0.0.1", ring="canary", labels={"rack": "r1"}),
    Host("gpu-a02", "10.0.0.2", ring="main", labels={"rack": "r1", "ring": "label-not-ring"}),
    Host("gpu-b01", "10.0.0.3", ring="main", labels={"rack": "r2"}),
    Host("cpu-01", "10.0.0.4"),
)

CASES = [
    (None, ["gpu-a01", "gpu-a02", "gpu-b01", "cpu-01"]),
    ("gpu-a01", ["gpu-a01"]),
    ("gpu-a0*", ["gpu-a01", "gpu-a02"]),
    ("gpu-?01", ["gpu-a01", "gpu-b01"]),
    ("*", ["gpu-a01", "gpu-a02", "gpu-b01", "cpu-01"]),
    ("ring=main", ["gpu-a02", "gpu-b01"]),
    ("ring=ca*", ["gpu-a01"]),
    ("label=rack=r1", ["gpu-a01", "gpu-a02"]),
    ("rack=r2", ["gpu-b01"]),
    ("label=ring=label-not-ring", ["gpu-a02"]),  # label= reaches a label that is called ring
    (" gpu-b01 , ring = canary ", ["gpu-a01", "gpu-b01"]),  # fleet order, not pattern order; spaces ignored
    ("gpu-b01,gpu-a01,gpu-b01", ["gpu-a01", "gpu-b01"]),  # each host once
    ("cpu-01,label=rack=r*", ["gpu-a01", "gpu-a02", "gpu-b01", "cpu-01"]),
]


@pytest.mark.parametrize("pattern, names", CASES)
def test_selects_in_fleet_order(pattern, names):
    assert [h.name for h in select_hosts(HOSTS, pattern)] == names


def test_names_are_case_sensitive_globs():
    with pytest.raises(UsageError):
        select_hosts(HOSTS, "GPU-A01")


NO_MATCH = [
    ("gpu-z*", "--limit 'gpu-z*' matches no host in fleet prod"),
    ("ring=early", "--limit 'ring=early' matches no host in fleet prod"),
    ("rack=r9", "--limit 'rack=r9' matches no host in fleet prod"),
    ("label=zone=a", "--limit 'label=zone=a' matches no host in fleet prod"),
    ("gpu-a01,gpu-a9", "--limit 'gpu-a01,gpu-a9': 'gpu-a9' matches no host in fleet prod"),
]


@pytest.mark.parametrize("pattern, message", NO_MATCH)
def test_a_term_that_matches_nothing_is_a_usage_error(pattern, message):
    with pytest.raises(UsageError) as e:
        select_hosts(HOSTS, pattern, fleet_name="prod")
    assert e.value.message == message and e.value.exit_code == ExitCode.USAGE


def test_without_a_fleet_name_the_message_still_reads():
    with pytest.raises(UsageError, match=r"^--limit 'nope' matches no host in the fleet$"):
        select_hosts(HOSTS, "nope")
    with pytest.raises(UsageError, match="matches no host"):
        select_hosts((), "*")


@pytest.mark.parametrize(
    "pattern, why",
    [
        ("", "empty selector"),
        ("gpu-a01,,gpu-a02", "empty selector"),
        ("gpu-a01,", "empty selector"),
        ("ring=", "'ring=' needs a key and a value"),
        ("=r1", "'=r1' needs a key and a value"),
        ("label=rack", "'label=rack' needs label=KEY=VALUE"),
        ("label==r1", "'label==r1' needs a key and a value"),
    ],
)
def test_unreadable_patterns(pattern, why):
    with pytest.raises(UsageError) as e:
        parse_pattern(pattern)
    assert e.value.message == f"--limit {pattern!r}: {why}" and e.value.hint


def test_none_selects_an_empty_fleet_without_complaint():
    assert select_hosts((), None) == ()
