"""A driver package installed without a reboot: NVML's version mismatch is its own error kind, the tool facts
and the loaded kernel module's version are still reported, and `check` fails the host saying to reboot it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fleetctl.core.compat.matrix import parse_matrix
from fleetctl.core.compat.profile import parse_profile
from fleetctl.core.compat.report import to_json, to_junit
from fleetctl.core.compat.rules import RULES, check_report, check_snapshot
from fleetctl.core.compat.rules_loaded import DRIVER_LOADED
from fleetctl.core.facts import NVML_VERSION_MISMATCH, PROBE_ERROR_KINDS, HostFacts, parse_kernel_module_version
from fleetctl.core.fleet import Host
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot, report_from_probe

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "probe"
MATRIX = parse_matrix({str(p): p.read_text() for p in (ROOT / "profiles" / "matrix").glob("*.toml")})
PROFILE = parse_profile(
    '[profile]\nname = "t"\n[image]\nref = "vllm/vllm-openai:v0.11.0"\ncuda = "12.8"\nvllm = "0.11.0"\n[requires]\n',
    "t.toml",
    MATRIX,
)
HOST = Host("gpu-c03", "10.0.3.3", ring="canary")


def mismatch_text(**changes) -> str:
    doc = json.loads((FIXTURES / "version-mismatch.json").read_text())
    doc.update(changes)
    return json.dumps(doc)


# -- the probe document -> the host report ------------------------------------------------------------------------


def test_the_mismatch_is_its_own_kind_with_the_tool_facts_and_the_loaded_module():
    report = report_from_probe(HOST, 0, mismatch_text(), "")
    assert NVML_VERSION_MISMATCH == "nvml_version_mismatch" and NVML_VERSION_MISMATCH in PROBE_ERROR_KINDS
    assert not report.ok and report.error.kind == "nvml_version_mismatch"
    assert "takes effect at the next reboot" in report.error.message
    assert report.error.message.endswith("(loaded kernel module: 570.133.20)")
    f = report.facts
    assert (f.docker_version, f.nvidia_container_toolkit_version, f.fabric_manager_version) == (
        "27.5.1",
        "1.17.8",
        "575.57.08",
    )
    assert (f.kernel_module_version, f.driver_version, f.cuda_driver_version, f.gpus) == ("570.133.20", None, None, ())


def test_without_the_proc_file_the_mismatch_is_reported_without_a_module_version():
    report = report_from_probe(HOST, 0, mismatch_text(kernel_module=None), "")
    assert report.error.kind == "nvml_version_mismatch" and "(loaded kernel module" not in report.error.message
    assert report.facts.kernel_module_version is None and report.facts.docker_version == "27.5.1"


@pytest.mark.parametrize("module", [17, ["NVRM version: x"], {"a": 1}, "", "garbage\n"])
def test_a_kernel_module_text_that_is_not_one_reads_as_unknown(module):
    assert report_from_probe(HOST, 0, mismatch_text(kernel_module=module), "").facts.kernel_module_version is None


def test_a_probe_of_an_older_fleetctl_has_no_kernel_module_key():
    doc = json.loads((FIXTURES / "healthy-h100x2.json").read_text())
    assert "kernel_module" not in doc
    assert report_from_probe(HOST, 0, json.dumps(doc), "").facts.kernel_module_version is None


def test_the_module_version_is_kept_in_the_snapshot_and_a_snapshot_without_it_reads():
    facts = report_from_probe(HOST, 0, mismatch_text(), "").facts
    assert facts.to_dict()["kernel_module_version"] == "570.133.20"
    assert HostFacts.from_dict(json.loads(json.dumps(facts.to_dict()))) == facts
    old = {k: v for k, v in facts.to_dict().items() if k != "kernel_module_version"}
    assert HostFacts.from_dict(old).kernel_module_version is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "535.104.05",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Fri Mar 14 20:47:59 UTC 2025\n",
            "570.133.20",
        ),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  575.57.08  Release Build  (x)  Tue\n", "575.57.08"),
        ("NVRM version: NVIDIA UNIX ppc64le Kernel Module  418.67  Sat Apr  6 03:07:24 CDT 2019\n", "418.67"),
        ("GCC version:  gcc version 12.2.0\n", None),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  unknown\n", None),
        ("", None),
        (None, None),
    ],
)
def test_kernel_module_version_parser(text, expected):
    assert parse_kernel_module_version(text) == expected


# -- the probe script on the host ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_script():
    spec = importlib.util.spec_from_file_location("fleetctl_probe_script", ROOT / "fleetctl" / "probe" / "probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeNvml:
    """What the probe needs of pynvml for nvmlInit to fail with ``value``."""

    NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIB_RM_VERSION_MISMATCH = 12, 9, 18

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__("RM has detected an NVML/RM version mismatch." if value == 18 else f"error {value}")
            self.value = value

    def __init__(self, value: int) -> None:
        self.value = value

    def nvmlInit(self) -> None:
        raise self.NVMLError(self.value)


@pytest.mark.parametrize(
    "value, kind",
    [(18, "nvml_version_mismatch"), (9, "nvml_driver_not_loaded"), (12, "nvml_library_missing"), (3, "probe_failed")],
)
def test_the_probe_names_each_init_failure(probe_script, monkeypatch, value, kind):
    monkeypatch.setattr(probe_script, "load_pynvml", lambda: FakeNvml(value))
    found = probe_script.nvml_facts({})
    assert found[0] == kind
    if kind == "nvml_version_mismatch":
        assert "version mismatch" in found[1] and "takes effect at the next reboot" in found[1]


def test_the_probe_reads_the_module_file_and_says_none_without_it(probe_script, monkeypatch, tmp_path):
    path = tmp_path / "version"
    path.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.133.20  Fri\n")
    monkeypatch.setattr(probe_script, "PROC_NVIDIA_VERSION", str(path))
    assert probe_script.kernel_module() == path.read_text()
    monkeypatch.setattr(probe_script, "PROC_NVIDIA_VERSION", str(tmp_path / "absent"))
    assert probe_script.kernel_module() is None


# -- check ----------------------------------------------------------------------------------------------------


def mismatch_report(name: str = "gpu-c03", **changes) -> HostReport:
    report = report_from_probe(Host(name, name), 0, mismatch_text(**changes), "")
    assert report.error is not None and report.error.kind == "nvml_version_mismatch"
    return report


def test_check_fails_the_host_and_says_to_reboot_it():
    checked = check_report(mismatch_report(), PROFILE, MATRIX)
    assert checked.probed and checked.status == "fail"
    first = checked.results[0]
    assert (first.rule, first.status, first.actual) == ("driver_loaded", "fail", "kernel module 570.133.20")
    assert first.message.startswith("driver installed but not loaded")
    assert first.fix == "reboot the host, e.g. `fleetctl maintain --limit gpu-c03 --reboot`"


def test_the_rules_that_read_only_tools_still_run_and_none_that_need_the_driver():
    rows = {r.rule: r.status for r in check_report(mismatch_report(), PROFILE, MATRIX).results}
    assert rows == {"driver_loaded": "fail", "docker": "pass", "container_toolkit": "pass"}
    no_docker = json.loads(mismatch_text())
    no_docker["tools"]["docker"] = None
    report = report_from_probe(HOST, 0, json.dumps(no_docker), "")
    assert {r.rule: r.status for r in check_report(report, PROFILE, MATRIX).results}["docker"] == "fail"


def test_without_a_module_version_the_result_still_says_what_to_do():
    first = check_report(mismatch_report(kernel_module=None), PROFILE, MATRIX).results[0]
    assert (first.status, first.actual) == ("fail", "an older kernel module") and "reboot the host" in first.fix


@pytest.mark.parametrize("kind", ["nvml_driver_not_loaded", "nvml_library_missing", "probe_failed", "unreachable"])
def test_other_failures_stay_unprobed(kind):
    report = HostReport("h", "h", None, facts=HostFacts(docker_version="27.5.1"), error=HostFailure(kind, "x"))
    checked = check_report(report, PROFILE, MATRIX)
    assert (checked.status, checked.results, checked.error) == ("unprobed", (), report.error)


def test_a_snapshot_with_such_a_host_fails_and_shows_the_rule():
    healthy = report_from_probe(Host("gpu-a01", "gpu-a01"), 0, (FIXTURES / "healthy-h100x2.json").read_text(), "")
    report = check_snapshot(Snapshot("t", (healthy, mismatch_report())), PROFILE, MATRIX)
    assert report.verdict == "fail" and [h.name for h in report.failed] == ["gpu-c03"]
    assert report.rules == (*RULES, DRIVER_LOADED)
    doc = to_json(report)
    assert doc["hosts"][1]["status"] == "fail" and doc["hosts"][1]["results"][0]["rule"] == "driver_loaded"
    assert 'name="driver_loaded"' in to_junit(report)
    assert check_snapshot(Snapshot("t", (healthy,)), PROFILE, MATRIX).rules == tuple(RULES)  # no column then
