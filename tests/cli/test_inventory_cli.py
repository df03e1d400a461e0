"""``fleetctl inventory`` in-process with the probe replaced: the saved snapshot merges runs, ``--diff`` compares
like with like, ``check --inventory`` notes old facts, and a bad saved snapshot stops the command before SSH."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import fleetctl.services.inventory as inventory_service
from fleetctl.cli.app import app
from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot

FLEET = '[fleet]\nname = "lab"\n\n[[hosts]]\nname = "gpu-a01"\nring = "canary"\n\n[[hosts]]\nname = "gpu-b01"\n'
RUNS = iter(f"2026-11-{day:02d}T08:00:00Z" for day in range(1, 29))
PROFILE = "llama31-8b-vllm011"


def facts(driver: str) -> HostFacts:
    gpus = tuple(
        GpuFacts(
            i, "NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_total_mib=81559, ecc_uncorrected_volatile=0
        )
        for i in range(2)
    )
    return HostFacts(
        driver_version=driver, docker_version="27.5.1", nvidia_container_toolkit_version="1.17.8", gpus=gpus
    )


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The fleet file, and ``answers``: what each host's probe returns (a driver, or an error kind)."""
    (tmp_path / "fleet.toml").write_text(FLEET)
    answers: dict[str, str] = {"gpu-a01": "570.133.20", "gpu-b01": "570.133.20"}
    probed: list[list[str]] = []

    def fake_collect(fleet, hosts, *, forks=32, on_host_done=None, **_):
        at = next(RUNS)
        probed.append([h.name for h in hosts])
        reports = []
        for h in hosts:
            answer = answers[h.name]
            failed = not answer[0].isdigit()
            reports.append(
                HostReport(
                    name=h.name,
                    address=h.address,
                    ring=h.ring,
                    facts=None if failed else facts(answer),
                    error=HostFailure(answer, "cannot reach it") if failed else None,
                    probed_at=at,
                )
            )
            on_host_done(reports[-1])
        return Snapshot(taken_at=at, fleet=fleet.name, hosts=tuple(reports))

    monkeypatch.setattr(inventory_service, "collect_inventory", fake_collect)
    env = {
        "HOME": str(tmp_path),
        "FLEETCTL_FLEET": str(tmp_path / "fleet.toml"),
        "FLEETCTL_PROFILES": "",
        "COLUMNS": "200",
    }
    saved = tmp_path / ".fleetctl" / "inventory.json"

    def run(*args):
        return CliRunner().invoke(app, list(args), env=env)

    return run, answers, probed, saved


def hosts_in(path) -> dict[str, dict]:
    return {h["name"]: h for h in json.loads(path.read_text())["hosts"]}


def test_a_limited_run_keeps_the_other_hosts_last_facts_with_their_time(lab):
    run, answers, _, saved = lab
    assert run("inventory").exit_code == 0
    first = hosts_in(saved)
    answers["gpu-a01"] = "575.57.08"
    assert run("inventory", "--limit", "gpu-a01").exit_code == 0
    after = hosts_in(saved)
    assert after["gpu-a01"]["facts"]["driver_version"] == "575.57.08"
    assert after["gpu-a01"]["probed_at"] > first["gpu-a01"]["probed_at"]
    assert after["gpu-b01"] == first["gpu-b01"]


def test_a_run_where_every_host_is_unreachable_keeps_the_last_good_facts(lab):
    run, answers, _, saved = lab
    run("inventory")
    first = hosts_in(saved)
    answers.update({"gpu-a01": "unreachable", "gpu-b01": "unreachable"})
    result = run("inventory")
    assert result.exit_code == 3
    assert hosts_in(saved) == first


def test_diff_after_a_limited_run_does_not_call_the_others_gone(lab):
    run, answers, _, _ = lab
    run("inventory")
    answers["gpu-a01"] = "575.57.08"
    result = run("inventory", "--limit", "gpu-a01", "--diff", "--json")
    changes = json.loads(result.stdout)["changes"]
    assert changes == [{"host": "gpu-a01", "path": "driver_version", "before": "570.133.20", "after": "575.57.08"}]


def test_check_of_the_saved_snapshot_notes_old_facts_without_failing(lab):
    run, answers, _, saved = lab
    run("inventory")
    answers["gpu-a01"] = "unreachable"
    run("inventory")
    result = run("check", "--profile", PROFILE, "--inventory", str(saved))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: gpu-a01: facts from 2026-11-")
    assert "1 day before the snapshot's latest inventory" in notes[0]


def test_a_bad_saved_snapshot_stops_inventory_before_any_ssh(lab):
    run, _, probed, saved = lab
    saved.parent.mkdir()
    saved.write_text('{"schema": "fleetctl.inventory/v1", "hosts": [{"name": "x", "facts": {"gpus": [')
    result = run("inventory")
    assert result.exit_code == 2 and probed == []
    assert result.stderr.splitlines()[0].startswith(f"error: {saved}:1: not valid JSON")
