"""``fleetctl check`` and ``fleetctl matrix show`` in-process: the three formats, --output, --limit, the live path
(with collect_inventory replaced) and every exit code."""

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import fleetctl.services.inventory as inventory_service
from fleetctl.cli.app import app
from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot

PROFILE = "llama31-8b-vllm011"  # vLLM 0.11, CUDA 12.8, >= 40000 MiB, CC >= 8.0


def facts(driver="570.133.20", n=2, name="NVIDIA H100 80GB HBM3", cc="9.0", **gpu_kw):
    gpus = tuple(
        GpuFacts(
            index=i, name=name, compute_capability=cc, memory_total_mib=81559, ecc_uncorrected_volatile=0, **gpu_kw
        )
        for i in range(n)
    )
    return HostFacts(
        driver_version=driver, docker_version="27.5.1", nvidia_container_toolkit_version="1.17.8", gpus=gpus
    )


def report(name, host_facts=None, error=None, ring="main"):
    return HostReport(name=name, address=f"{name}.lab", ring=ring, facts=host_facts, error=error)


GOOD = report("gpu-a01", facts(), ring="canary")
FORWARD = report("gpu-a02", facts("535.230.02"))  # passes with a warning
OLD_DRIVER = report("gpu-b01", facts("550.54.15"))
GEFORCE = report("gpu-b02", facts("535.230.02", name="NVIDIA GeForce RTX 4090", cc="8.9"))
DOWN = report("gpu-c01", error=HostFailure("unreachable", "connection timed out"))


@pytest.fixture
def snapshot_file(tmp_path):
    def write(*hosts):
        path = tmp_path / "inventory.json"
        path.write_text(json.dumps(Snapshot(taken_at="2026-09-01T00:00:00Z", fleet="lab", hosts=hosts).to_dict()))
        return str(path)

    return write


@pytest.fixture
def run(tmp_path):
    env = {"FLEETCTL_FLEET": str(tmp_path / "fleet.toml"), "FLEETCTL_PROFILES": "", "COLUMNS": "200"}

    def invoke(*args):
        return CliRunner().invoke(app, list(args), env=env)

    return invoke


def check(run, path, *extra):
    return run("check", "--profile", PROFILE, "--inventory", path, *extra)


# ------------------------------------------------------------------------------------------ table and exits


def test_all_hosts_pass_exit_0_with_warnings_allowed(run, snapshot_file):
    result = check(run, snapshot_file(GOOD, FORWARD))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"profile {PROFILE} · vllm/vllm-openai:v0.11.0 · CUDA 12.8"
    assert lines[1].split()[:4] == ["host", "result", "drv/cuda", "drv/gpu"]
    assert lines[2].split()[:4] == ["gpu-a01", "pass", "✓", "✓"]
    assert lines[3].split()[:3] == ["gpu-a02", "warn", "!"]
    assert "runs only through forward compatibility" in result.stdout and "failures" not in result.stdout
    assert lines[-1] == "2 hosts: 1 pass, 1 pass with warnings, 0 fail, 0 could not be probed"
    assert result.stderr == ""


def test_a_failure_exits_4_and_is_spelled_out_with_its_fix(run, snapshot_file):
    result = check(run, snapshot_file(GOOD, OLD_DRIVER, GEFORCE, DOWN))
    assert result.exit_code == 4
    out = result.stdout
    assert (
        "gpu-b01  driver_for_cuda: driver 550.54.15 < 570.26 required by CUDA 12.8 (image "
        "vllm/vllm-openai:v0.11.0)" in out
    )
    assert "      fix: upgrade the driver to ≥ 570.26, or use a CUDA ≤ 12.4 image" in out
    assert "not on NVIDIA GeForce RTX 4090 (geforce): CUDA fails with error 804" in out
    assert "could not be probed\n  gpu-c01  unreachable: connection timed out" in out
    assert result.stderr.startswith(f"error: 2 of 4 hosts fail profile {PROFILE}: gpu-b01, gpu-b02")


def test_an_unprobed_host_and_no_failure_exits_3(run, snapshot_file):
    result = check(run, snapshot_file(GOOD, DOWN))
    assert result.exit_code == 3 and "1 of 2 hosts could not be probed: gpu-c01" in result.stderr


def test_limit_filters_the_snapshot(run, snapshot_file):
    path = snapshot_file(GOOD, OLD_DRIVER, DOWN)
    assert check(run, path, "--limit", "gpu-a*").exit_code == 0
    assert check(run, path, "--limit", "ring=canary").exit_code == 0
    missing = check(run, path, "--limit", "nope-*")
    assert missing.exit_code == 2 and "matches no host" in missing.stderr


# ------------------------------------------------------------------------------------------------ JSON


def test_json_is_the_only_thing_on_stdout(run, snapshot_file):
    result = check(run, snapshot_file(GOOD, OLD_DRIVER, DOWN), "--format", "json")
    assert result.exit_code == 4
    doc = json.loads(result.stdout)
    assert (doc["schema"], doc["profile"], doc["ok"]) == ("fleetctl.check/v1", PROFILE, False)
    assert doc["summary"] == {"hosts": 3, "pass": 1, "warn": 0, "fail": 1, "unprobed": 1}
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts["gpu-a01"]) >= {"name", "ok", "results"} and hosts["gpu-a01"]["ok"] is True
    first = hosts["gpu-b01"]["results"][0]
    assert set(first) == {"rule", "status", "expected", "actual", "message", "fix"}
    assert (first["rule"], first["status"], first["expected"], first["actual"]) == (
        "driver_for_cuda",
        "fail",
        ">= 570.26 (CUDA 12.8)",
        "550.54.15",
    )
    assert hosts["gpu-c01"] == {
        "name": "gpu-c01",
        "ok": False,
        "status": "unprobed",
        "results": [],
        "error": {"kind": "unreachable", "message": "connection timed out"},
    }
    assert "error:" in result.stderr


# ----------------------------------------------------------------------------------------------- JUnit


def test_junit_parses_with_a_suite_per_host_and_a_case_per_rule(run, snapshot_file):
    result = check(run, snapshot_file(GOOD, FORWARD, OLD_DRIVER, DOWN), "--format", "junit")
    assert result.exit_code == 4
    root = ET.fromstring(result.stdout.encode())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert root.tag == "testsuites" and list(suites) == ["gpu-a01", "gpu-a02", "gpu-b01", "gpu-c01"]
    good_cases = [c.get("name") for c in suites["gpu-a01"].iter("testcase")]
    assert good_cases[:3] == ["driver_for_cuda", "driver_for_gpu", "arch_for_cuda"]
    assert suites["gpu-a01"].get("tests") == str(len(good_cases)) and suites["gpu-a01"].get("failures") == "0"
    assert all(c.get("classname") == f"fleetctl.check.{PROFILE}.gpu-a01" for c in suites["gpu-a01"])
    failure = suites["gpu-b01"].find("testcase[@name='driver_for_cuda']/failure")
    assert failure.get("message").startswith("driver 550.54.15 < 570.26 required by CUDA 12.8")
    assert "fix: upgrade the driver to ≥ 570.26, or use a CUDA ≤ 12.4 image" in failure.text
    warned = suites["gpu-a02"].find("testcase[@name='driver_for_cuda']")
    assert warned.find("failure") is None and "warning: driver 535.230.02" in warned.find("system-out").text
    error = suites["gpu-c01"].find("testcase[@name='probe']/error")
    assert error.get("type") == "unreachable" and suites["gpu-c01"].get("errors") == "1"
    assert (root.get("failures"), root.get("errors")) == ("1", "1")


def test_output_writes_the_document_and_shows_the_table(run, snapshot_file, tmp_path):
    target = tmp_path / "check.xml"
    result = check(run, snapshot_file(GOOD, OLD_DRIVER), "--format", "junit", "--output", str(target))
    assert result.exit_code == 4
    assert ET.parse(target).getroot().tag == "testsuites"
    assert result.stdout.startswith(f"profile {PROFILE}") and f"junit report written to {target}" in result.stderr
    table = tmp_path / "check.txt"
    assert check(run, snapshot_file(GOOD), "--output", str(table)).exit_code == 0
    assert table.read_text().splitlines()[2].split()[:2] == ["gpu-a01", "pass"]


def test_an_unwritable_output_is_a_usage_error(run, snapshot_file, tmp_path):
    result = check(run, snapshot_file(GOOD), "--format", "json", "--output", str(tmp_path / "no" / "x.json"))
    assert result.exit_code == 2 and "cannot write" in result.stderr


# ---------------------------------------------------------------------------------------- exit 2: bad input


def test_an_unknown_profile_exits_2_and_lists_the_known_ones(run, snapshot_file):
    result = run("check", "--profile", "nope", "--inventory", snapshot_file(GOOD))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown profile 'nope'; known profiles: ") and PROFILE in result.stderr


def test_a_bad_profile_file_exits_2_with_file_and_line(run, snapshot_file, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[profile]\nname = "bad"\n[image]\nref = "x/y:1"\ncuda = "12.8"\n[serve]\nmodel = "m"\ngpu = 2\n')
    result = run("check", "--profile", str(bad), "--inventory", snapshot_file(GOOD))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: {bad}:8: unknown key serve.gpu (did you mean gpus?)"


@pytest.mark.parametrize(
    "content, words",
    [
        ('{"schema": "fleetctl.inventory/v1",\n "hosts": [\n}', ":3: not valid JSON"),
        ('{"schema": "something/v9", "hosts": []}', "not a fleetctl.inventory/v1 document"),
    ],
)
def test_a_bad_snapshot_exits_2(run, tmp_path, content, words):
    path = tmp_path / "inv.json"
    path.write_text(content)
    result = run("check", "--profile", PROFILE, "--inventory", str(path))
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_a_missing_snapshot_exits_2(run, tmp_path):
    result = run("check", "--profile", PROFILE, "--inventory", str(tmp_path / "none.json"))
    assert result.exit_code == 2 and "cannot read snapshot" in result.stderr


# ------------------------------------------------------------------------------------------------ live path

FLEET = '[fleet]\nname = "lab"\n\n[[hosts]]\nname = "gpu-a01"\nring = "canary"\n\n[[hosts]]\nname = "gpu-b01"\n'


def test_live_check_probes_the_selected_hosts_through_the_inventory_layer(run, tmp_path, monkeypatch):
    (tmp_path / "fleet.toml").write_text(FLEET)
    seen = {}

    def fake_collect(fleet, hosts, *, forks=32, accept_new_host_keys=False, on_host_done=None):
        seen.update(fleet=fleet.name, hosts=[h.name for h in hosts], forks=forks, accept=accept_new_host_keys)
        reports = tuple(report(h.name, facts("550.54.15" if h.name == "gpu-b01" else "570.133.20")) for h in hosts)
        for r in reports:
            on_host_done(r)
        return Snapshot(taken_at="now", fleet=fleet.name, hosts=reports)

    monkeypatch.setattr(inventory_service, "collect_inventory", fake_collect)
    result = run("check", "--profile", PROFILE, "--forks", "4", "--accept-new-host-keys", "--format", "json")
    assert result.exit_code == 4 and seen == {
        "fleet": "lab",
        "hosts": ["gpu-a01", "gpu-b01"],
        "forks": 4,
        "accept": True,
    }
    assert [h["ok"] for h in json.loads(result.stdout)["hosts"]] == [True, False]
    limited = run("check", "--profile", PROFILE, "--limit", "ring=canary")
    assert limited.exit_code == 0 and seen["hosts"] == ["gpu-a01"]


# ------------------------------------------------------------------------------------------------ matrix show


def test_matrix_show_cuda_gpu_and_profile_with_sources(run):
    cuda = run("matrix", "show", "--cuda", "12.8")
    assert cuda.exit_code == 0 and "570.26" in cuda.stdout and "cuda-toolkit-release-notes" in cuda.stdout
    gpu = run("matrix", "show", "--gpu", "NVIDIA H200")
    assert gpu.exit_code == 0 and "H200 SXM" in gpu.stdout and "550.90.07" in gpu.stdout
    doc = json.loads(run("matrix", "show", "--profile", "llama31-8b-fp8-vllm012", "--json").stdout)
    lines = {line["topic"]: line for line in doc["sections"][0]["lines"]}
    assert lines["feature fp8"]["requirement"] == "compute capability >=8.9"
    assert lines["driver"]["requirement"].startswith("≥ 575.51.03") and lines["driver"]["source"].startswith("https://")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--gpu", "NVIDIA Nonexistent 9000"], "is not in the matrix"),
        (["--cuda", "12.7"], "CUDA 12.7 is not in the matrix"),
        ([], "give --cuda X.Y, --gpu NAME or --profile PROFILE"),
    ],
)
def test_matrix_show_usage_errors_exit_2(run, args, words):
    result = run("matrix", "show", *args)
    assert result.exit_code == 2 and words in result.stderr
