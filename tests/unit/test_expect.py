"""`--expect KEY=VERSION` as data: parsing row by row, and what a host's report does not meet."""

from __future__ import annotations

import pytest

from fleetctl.core.expect import Expectation, ExpectError, parse_expect, parse_expects, same_version, unmet
from fleetctl.core.facts import HostFacts
from fleetctl.core.inventory import HostFailure, HostReport


@pytest.mark.parametrize(
    "text, key, version, fact",
    [
        ("driver=575.57.08", "driver", "575.57.08", "driver_version"),
        ("cuda_driver=12.9", "cuda_driver", "12.9", "cuda_driver_version"),
        ("fabric_manager=575.57.08", "fabric_manager", "575.57.08", "fabric_manager_version"),
        ("toolkit=1.17.8", "toolkit", "1.17.8", "nvidia_container_toolkit_version"),
        (" driver = 575.57.08 ", "driver", "575.57.08", "driver_version"),  # blanks around are not part of it
        ("toolkit=1.17.8-1", "toolkit", "1.17.8-1", "nvidia_container_toolkit_version"),
    ],
)
def test_parse_expect(text, key, version, fact):
    expectation = parse_expect(text)
    assert (expectation.key, expectation.version, expectation.fact) == (key, version, fact)
    assert str(expectation) == f"{key}={version}"


@pytest.mark.parametrize(
    "text, message",
    [
        ("driver", '"driver": expected KEY=VERSION, e.g. driver=575.57.08; KEY is driver, cuda_driver, '),
        ("", '"": expected KEY=VERSION'),
        ("driver=", '"driver=": no version after driver= (KEY=VERSION'),
        ("driver=  ", '"driver=  ": no version after driver='),
        ("drivr=575.57.08", '"drivr=575.57.08": unknown key "drivr" (did you mean driver?)'),
        ("kernel=6.1", '"kernel=6.1": unknown key "kernel" (known: driver, cuda_driver, fabric_manager, toolkit)'),
        ("=575.57.08", '"=575.57.08": unknown key ""'),
        ("Driver=575", '"Driver=575": unknown key "Driver" (did you mean driver?)'),
        ("driver=575\n57", '"driver=575\\n57": control characters are not allowed'),
        ("driver=575\x1b[2J", '"driver=575\\u001b[2J": control characters are not allowed'),
        ("driver=575\x00", '"driver=575\\u0000": control characters are not allowed'),
        ("driver=575 57", '"driver=575 57": driver: a version is letters, digits'),
        ("driver=$(reboot)", '"driver=$(reboot)": driver: a version is letters, digits'),
        ("driver=-1", '"driver=-1": driver: a version is'),
        ("driver=575=57", '"driver=575=57": driver: a version is'),
        ("driver=" + "5" * 65, "driver: a version is letters, digits"),
        ("driver=[red]x", '"driver=[red]x": driver: a version is'),
    ],
)
def test_what_is_not_key_equals_version_is_one_line_saying_why(text, message):
    with pytest.raises(ExpectError) as e:
        parse_expect(text)
    assert isinstance(e.value, ValueError)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_parse_expects_keeps_order_and_refuses_a_key_twice():
    assert parse_expects(["driver=575.57.08", "toolkit=1.17.8"]) == (
        Expectation("driver", "575.57.08"),
        Expectation("toolkit", "1.17.8"),
    )
    assert parse_expects([]) == ()
    with pytest.raises(ExpectError, match='"driver=580.65.06": driver is expected twice \\(also "driver=575.57.08"\\)'):
        parse_expects(["driver=575.57.08", "driver=580.65.06"])


FACTS = HostFacts(
    driver_version="570.133.20",
    cuda_driver_version="12.8",
    fabric_manager_version="570.133.20",
    nvidia_container_toolkit_version="1.17.8",
    docker_version="27.5.1",
)


def report(facts=FACTS, error=None) -> HostReport:
    return HostReport("gpu-1", "10.0.0.1", "canary", facts=facts, error=error)


@pytest.mark.parametrize(
    "texts, expected",
    [
        ([], []),
        (["driver=570.133.20"], []),
        (["driver=575.57.08"], ["driver is 570.133.20, expected 575.57.08"]),
        (["cuda_driver=12.8"], []),
        (["cuda_driver=12.8.0"], []),  # equal as versions
        (["cuda_driver=12.9"], ["cuda_driver is 12.8, expected 12.9"]),
        (["fabric_manager=575.57.08"], ["fabric_manager is 570.133.20, expected 575.57.08"]),
        (["toolkit=1.17.8"], []),
        (["toolkit=1.18.0"], ["toolkit is 1.17.8, expected 1.18.0"]),
        (
            ["driver=575.57.08", "toolkit=1.17.8", "fabric_manager=575.57.08"],
            ["driver is 570.133.20, expected 575.57.08", "fabric_manager is 570.133.20, expected 575.57.08"],
        ),
    ],
)
def test_unmet_row_by_row(texts, expected):
    assert unmet([parse_expect(t) for t in texts], report()) == expected


def test_a_fact_the_host_does_not_report_is_unmet():
    bare = HostFacts(driver_version="575.57.08")
    assert unmet([parse_expect("fabric_manager=575.57.08")], report(bare)) == [
        "fabric_manager is not reported, expected 575.57.08"
    ]
    assert unmet([parse_expect("driver=575.57.08")], report(bare)) == []


def test_a_host_whose_probe_failed_is_its_failure():
    failed = report(
        HostFacts(docker_version="27.5.1"),
        HostFailure("nvml_version_mismatch", "NVIDIA driver/library version mismatch"),
    )
    expected = ["the host could not be probed: nvml_version_mismatch: NVIDIA driver/library version mismatch"]
    assert unmet([parse_expect("driver=575.57.08"), parse_expect("toolkit=1.17.8")], failed) == expected
    unreachable = report(None, HostFailure("unreachable", "no route to host"))
    assert unmet([parse_expect("driver=575.57.08")], unreachable) == [
        "the host could not be probed: unreachable: no route to host"
    ]
    assert unmet([], unreachable) == []  # nothing expected: nothing unmet
    assert unmet([parse_expect("driver=1.0")], report(None)) == ["the host reported no facts"]


@pytest.mark.parametrize(
    "actual, expected, same",
    [
        ("575.57.08", "575.57.08", True),
        ("575.57.08", "575.57.8", True),  # both parse: equal as versions
        ("12.9", "12.9.0", True),
        ("575.57.08", "575.57.09", False),
        ("1.17.8", "1.17.8rc1", False),
        ("20.10.24+dfsg1", "20.10.24+dfsg1", True),
        ("20.10.24+dfsg1", "20.10.24", False),  # a local version is not the public one
        ("N/A", "N/A", True),  # neither parses: as strings
        ("N/A", "575.57.08", False),
        ("575.57.08-1ubuntu1", "575.57.08-1ubuntu1", True),
        ("575.57.08-1ubuntu1", "575.57.08-1ubuntu2", False),
    ],
)
def test_same_version(actual, expected, same):
    assert same_version(actual, expected) is same
