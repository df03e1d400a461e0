"""Hostile `fleetctl maintain` arguments and journals: one line naming what is wrong, the documented exit code, no
traceback, nothing changed (no journal written). Table-driven: arguments -> exit code and first line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_hostile_pools import HOSTS, POOLED, first_line, invoke, profiles  # noqa: F401 - a fixture

NOTHING = "error: nothing to do: give --run CMD (one or more) and/or --reboot"
# (id, fleet file text, arguments, exit code, first line of stderr)
CASES = [
    ("no-scope", HOSTS, ["maintain", "--run", "true"], 2,
     "error: say which hosts: --pool NAME or --limit PATTERN (maintenance never defaults to every host)"),
    ("nothing-to-do", HOSTS, ["maintain", "--limit", "gpu-1", "--plan"], 2, NOTHING),
    ("expect-unknown-key", HOSTS, ["maintain", "--limit", "gpu-1", "--reboot", "--expect", "kernel=1", "--plan"], 2,
     'error: --expect "kernel=1": unknown key "kernel" (known: driver, cuda_driver, fabric_manager, toolkit)'),
    ("expect-twice", HOSTS,
     ["maintain", "--limit", "gpu-1", "--reboot", "--expect", "driver=1", "--expect", "driver=2", "--plan"], 2,
     'error: --expect "driver=2": driver is expected twice (also "driver=1")'),
    ("expect-escape", HOSTS, ["maintain", "--limit", "gpu-1", "--reboot", "--expect", "driver=5\x1b[31m", "--plan"], 2,
     'error: --expect "driver=5\\u001b[31m": control characters are not allowed'),
    ("expect-no-value", HOSTS, ["maintain", "--limit", "gpu-1", "--reboot", "--expect", "driver", "--plan"], 2,
     'error: --expect "driver": expected KEY=VERSION'),
    ("across-pools", POOLED, ["maintain", "--limit", "gpu-1,gpu-3", "--reboot", "--plan"], 2,
     "error: the hosts are in pools chat, small: maintain one pool at a time (--pool NAME)"),
    ("unknown-pool", POOLED, ["maintain", "--pool", "[red]x", "--reboot", "--plan"], 2,
     "error: --pool '[red]x': no such pool (pools: chat, small)"),
    ("limit-outside-the-pool", POOLED, ["maintain", "--pool", "small", "--limit", "gpu-1", "--reboot", "--plan"], 2,
     "error: --limit 'gpu-1' matches no host in fleet t, pool small"),
    ("resume-nothing", HOSTS, ["maintain", "--resume"], 2, "error: no unfinished maintenance to resume"),
    ("abort-nothing", HOSTS, ["maintain", "--abort"], 2, "error: no unfinished maintenance to abort"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "args", "code", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_maintain_arguments(tmp_path, profiles, text, args, code, expected):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    result = invoke(["--fleet", str(path), *args], profiles)
    assert (result.exit_code, first_line(result)[: len(expected)]) == (code, expected), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / ".fleetctl" / "runs").exists()  # no run began


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["maintain", "--limit", "gpu-1", "--run", "true", "--rerun"], "--rerun goes with --resume"),
        (["maintain", "--limit", "gpu-1", "--reboot", "--reboot-timeout", "0"], "must be a positive number"),
        (["maintain", "--limit", "gpu-1", "--reboot", "--command-timeout", "-1"], "must be a positive number"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, profiles, args, words):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    result = invoke(["--fleet", str(path), *args], profiles)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_a_command_with_markup_and_escapes_is_shown_as_written_in_the_plan(tmp_path, profiles):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    result = invoke(
        ["--fleet", str(path), "maintain", "--limit", "gpu-1", "--run", "echo [red]x\x1b[2J", "--plan"], profiles
    )
    assert result.exit_code == 0, result.output
    assert "[red]x" in result.stdout and "\x1b[2J" not in result.stdout


HEAD = {
    "schema": "fleetctl.journal/v1",
    "at": "2026-11-30T00:00:00.000Z",
    "event": "maintain_started",
    "plan": {"batch_size": 1, "rings": [{"name": "canary", "hosts": ["gpu-1"], "batches": [["gpu-1"]]}]},
    "commands": ["true"],
    "sudo": False,
    "reboot": False,
    "reboot_command": "systemctl reboot",
    "reboot_timeout_s": 900,
    "expect": [],
    "hosts": {"gpu-1": {"record": None, "drained": False, "profile": None}},
    "bake_s": 1,
    "gate": {},
    "pool": None,
    "command_timeout_s": 60,
}


def unfinished(tmp_path: Path, head: dict) -> str:
    runs = tmp_path / ".fleetctl" / "runs"
    runs.mkdir(parents=True)
    run_id = "20261130T000000Z-abcdef"
    (runs / f"{run_id}.jsonl").write_text(json.dumps({**head, "run_id": run_id}) + "\n")
    return run_id


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["upgrade", "--resume"], "is a maintenance: continue it with fleetctl maintain --resume"),
        (["upgrade", "--abort"], "is a maintenance: continue it with fleetctl maintain --resume"),
        (["upgrade", "--profile", "chat", "--yes"], "did not finish: continue it with fleetctl maintain --resume"),
        (["rollback", "--yes"], "did not finish: continue it with fleetctl maintain --resume"),
    ],
)
def test_upgrade_commands_never_pick_up_a_maintenance_run(tmp_path, profiles, args, expected):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    run_id = unfinished(tmp_path, HEAD)
    journal = (tmp_path / ".fleetctl" / "runs" / f"{run_id}.jsonl").read_text()
    result = invoke(["--fleet", str(path), *args], profiles)
    assert result.exit_code == 2 and expected in first_line(result), result.output
    assert (tmp_path / ".fleetctl" / "runs" / f"{run_id}.jsonl").read_text() == journal  # nothing appended


def test_maintain_resume_never_picks_up_an_upgrade_run(tmp_path, profiles):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
    head = next(
        json.loads(line)
        for f in sorted(fixture.glob("*.jsonl"))
        for line in f.read_text().splitlines()[:1]
        if '"run_started"' in line
    )
    unfinished(tmp_path, head)
    result = invoke(["--fleet", str(path), "maintain", "--resume"], profiles)
    assert result.exit_code == 2 and "is an upgrade: continue it with fleetctl upgrade --resume" in first_line(result)


def test_history_lists_a_maintenance_run(tmp_path, profiles):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    unfinished(tmp_path, HEAD)
    doc = json.loads(invoke(["--fleet", str(path), "history", "--json"], profiles).stdout)
    row = doc["runs"][0]
    assert (row["kind"], row["outcome"], row["hosts"], row["maintenance"]) == ("maintain", "unfinished", 1, "run true")
    table = invoke(["--fleet", str(path), "history"], profiles).stdout
    assert "maintain" in table and "run true" in table and "unfinished" in table


def test_abandon_ends_a_maintenance_run_without_touching_a_host(tmp_path, profiles):  # noqa: F811
    path = tmp_path / "fleet.toml"
    path.write_text(HOSTS)
    unfinished(tmp_path, HEAD)
    refused = invoke(["--fleet", str(path), "maintain", "--abandon"], profiles)
    assert refused.exit_code == 2 and "--abandon needs --reason" in refused.output
    done = invoke(["--fleet", str(path), "maintain", "--abandon", "--reason", "fixed by hand", "--json"], profiles)
    assert done.exit_code == 0 and json.loads(done.stdout)["outcome"] == "abandoned"
    row = json.loads(invoke(["--fleet", str(path), "history", "--json"], profiles).stdout)["runs"][0]
    assert (row["kind"], row["outcome"]) == ("maintain", "abandoned")
    again = invoke(["--fleet", str(path), "maintain", "--abandon", "--reason", "x"], profiles)
    assert again.exit_code == 2 and first_line(again) == "error: no unfinished run to abandon"
