"""Hostile ssh_config files and snapshots, table-driven: each input, the exit code and the first line printed.

ssh_config cases run ``fleetctl inventory`` with ``$HOME`` in a temporary folder; every one of them stops
before any connection (the fleet's only host is on a closed loopback port, and the test would see a host error
instead). Snapshot cases run ``check --inventory FILE`` and ``inventory`` over a saved snapshot.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import fleetctl.services.inventory as inventory_service
from fleetctl.cli.app import app

FLEET = '[fleet]\nname = "lab"\n\n[[hosts]]\nname = "gpu1"\naddress = "gpu1"\n'
PROFILE = "llama31-8b-vllm011"
CONFIG_ERROR = "error: {home}/.ssh/config"

# (case, ~/.ssh/config, other files under ~/.ssh, first line of stderr)
SSH_CONFIGS = [
    (
        "Match exec is never run",
        'Match host gpu* exec "touch {home}/pwned"\n  User x\n',
        {},
        CONFIG_ERROR + ":1: Match exec is not supported (fleetctl never runs commands from ssh_config); "
        "use Match host or originalhost",
    ),
    (
        "Match exec negated is refused too",
        'Match !exec "touch {home}/pwned"\n  User x\n',
        {},
        CONFIG_ERROR + ":1: Match exec is not supported (fleetctl never runs commands from ssh_config); "
        "use Match host or originalhost",
    ),
    (
        "Match exec in an included file names that file",
        "Include conf.d/*\n",
        {"conf.d/x": 'Host *\nMatch exec "id"\n  User x\n'},
        "error: {home}/.ssh/conf.d/x:2: Match exec is not supported (fleetctl never runs commands from ssh_config); "
        "use Match host or originalhost",
    ),
    (
        "Match on something fleetctl cannot evaluate",
        "Match localnetwork 10.0.0.0/8\n  User x\n",
        {},
        CONFIG_ERROR + ":1: Match localnetwork is not supported (fleetctl does not evaluate it); "
        "use Match host or originalhost",
    ),
    ("Include loop", "Include config\n", {}, CONFIG_ERROR + ": Include nested more than 16 deep"),
    ("garbage line", "Host gpu1\n  !!!\n", {}, CONFIG_ERROR + ":2: cannot parse '!!!'"),
    (
        "unclosed quote",
        "Host 'gpu1\n  User x\n",
        {},
        CONFIG_ERROR + ":1: cannot parse host line: No closing quotation",
    ),
    ("Match without its argument", "Match host\n", {}, CONFIG_ERROR + ":1: Match host needs an argument"),
    (
        "unknown % token",
        "Host *\n  IdentityFile ~/.ssh/%x_key\n",
        {},
        "error: ssh_config for gpu1: unknown token %x in '~/.ssh/%x_key'",
    ),
    (
        "ProxyJump with a bad port",
        "Host gpu1\n  ProxyJump ops@bastion:abc\n",
        {},
        "error: ssh_config for gpu1: invalid port 'abc' in 'ops@bastion:abc'",
    ),
    (
        "ProxyJump with an empty hop",
        "Host gpu1\n  ProxyJump a,,b\n",
        {},
        "error: ssh_config for gpu1: empty hop in ProxyJump 'a,,b'",
    ),
    (
        "ProxyJump with a token",
        "Host gpu1\n  ProxyJump jump-%h\n",
        {},
        "error: ssh_config for gpu1: invalid ProxyJump 'jump-%h'",
    ),
    ("Port that is not a number", "Host gpu1\n  Port twenty-two\n", {}, "error: ssh_config for gpu1: invalid port"),
    ("Port out of range", "Host gpu1\n  Port 70000\n", {}, "error: ssh_config for gpu1: invalid port '70000'"),
    (
        "included file that is not text",
        "Include bad\n",
        {"bad": b"\xff\xfe\x00"},
        "error: {home}/.ssh/bad: cannot read ssh_config: 'utf-8' codec can't decode",
    ),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "fleet.toml").write_text(FLEET)
    (tmp_path / ".ssh").mkdir()
    probed = []
    real = inventory_service.probe_host
    monkeypatch.setattr(inventory_service, "probe_host", lambda pool, host: (probed.append(host), real(pool, host))[1])
    return tmp_path, probed


@pytest.mark.parametrize("case, config, files, first_line", SSH_CONFIGS, ids=[c[0] for c in SSH_CONFIGS])
def test_hostile_ssh_config(home, case, config, files, first_line):
    tmp, probed = home
    (tmp / ".ssh" / "config").write_text(config.format(home=tmp))
    for rel, content in files.items():
        path = tmp / ".ssh" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    env = {"HOME": str(tmp), "FLEETCTL_FLEET": str(tmp / "fleet.toml"), "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["inventory"], env=env)
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(first_line.format(home=tmp)), (case, lines)
    assert "Traceback" not in result.output
    assert probed == [] and not (tmp / "pwned").exists(), case  # stopped before any host, ran nothing


def snapshot(gpu: dict | None = None, **host) -> str:
    h = {"name": "gpu1", "address": "gpu1", "ring": None, "ok": True, "error": None, "probed_at": None}
    h["facts"] = {"driver_version": "570.133.20", "gpus": [{"index": 0, "compute_capability": "9.0", **(gpu or {})}]}
    return json.dumps({"schema": "fleetctl.inventory/v1", "taken_at": "2026-11-30T12:00:00Z", "hosts": [{**h, **host}]})


# (case, snapshot text, first line of stderr after "error: FILE")
SNAPSHOTS = [
    (
        "compute capability abc",
        snapshot({"compute_capability": "abc"}),
        ": host gpu1: gpus[0].compute_capability: expected MAJOR.MINOR like \"9.0\", got 'abc'",
    ),
    (
        "negative memory",
        snapshot({"memory_total_mib": -81559}),
        ": host gpu1: gpus[0].memory_total_mib: must not be negative, got -81559",
    ),
    ("negative GPU index", snapshot({"index": -2}), ": host gpu1: gpus[-2].index: must not be negative, got -2"),
    ("NaN power", snapshot({"power_draw_w": float("nan")}), ": host gpu1: gpus[0].power_draw_w: expected watts"),
    ("utilisation over 100", snapshot({"utilization_pct": 250}), ": host gpu1: gpus[0].utilization_pct: expected 0"),
    ("memory as a string", snapshot({"memory_total_mib": "80GB"}), ": host gpu1: memory_total_mib: expected int"),
    ("probed_at not a time", snapshot(probed_at="last tuesday"), ": host gpu1: probed_at: expected a UTC timestamp"),
    ("taken_at not a time", snapshot().replace("2026-11-30T12:00:00Z", "soon"), ": taken_at: expected a UTC"),
    ("JSON nested 100k deep", "[" * 100_000 + "]" * 100_000, ": not a snapshot: JSON nested too deeply"),
    ("not JSON", "{schema: inventory", ":1: not valid JSON"),
    ("another schema", json.dumps({"schema": "fleetctl.inventory/v9", "hosts": []}), ": not a fleetctl.inventory/v1"),
]


@pytest.mark.parametrize("case, text, first_line", SNAPSHOTS, ids=[c[0] for c in SNAPSHOTS])
def test_hostile_snapshot_for_check(tmp_path, case, text, first_line):
    path = tmp_path / "inventory.json"
    path.write_text(text)
    env = {"FLEETCTL_FLEET": str(tmp_path / "fleet.toml"), "FLEETCTL_PROFILES": "", "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["check", "--profile", PROFILE, "--inventory", str(path)], env=env)
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {path}{first_line}"), (case, lines)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case, text, first_line", SNAPSHOTS[:3], ids=[c[0] for c in SNAPSHOTS[:3]])
def test_hostile_saved_snapshot_stops_inventory_before_ssh(home, case, text, first_line):
    tmp, probed = home
    saved = tmp / ".fleetctl" / "inventory.json"
    saved.parent.mkdir()
    saved.write_text(text)
    result = CliRunner().invoke(app, ["inventory"], env={"HOME": str(tmp), "FLEETCTL_FLEET": str(tmp / "fleet.toml")})
    assert result.exit_code == 2 and probed == []
    assert result.stderr.splitlines()[0].startswith(f"error: {saved}{first_line}"), case
