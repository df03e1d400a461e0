"""``fleetctl hosts`` in-process: where the fleet file comes from, the table, --json, --limit, and bad files."""

import json

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

FLEET = """\
[fleet]
name = "prod-east"

[ssh]
user = "ops"

[[hosts]]
name = "gpu-a01"
address = "10.0.1.11"
port = 2222
ring = "canary"
labels = { rack = "r1" }

[[hosts]]
name = "gpu-a02"
ring = "main"
labels = { rack = "r2", zone = "b" }

[[hosts]]
name = "gpu-b01"
"""


@pytest.fixture
def fleet_file(tmp_path):
    path = tmp_path / "prod.toml"
    path.write_text(FLEET)
    return path


def invoke(args, env=None):
    """Run fleetctl in-process with a clean $FLEETCTL_FLEET unless ``env`` sets it."""
    return CliRunner().invoke(app, args, env={"FLEETCTL_FLEET": None, **(env or {})}, catch_exceptions=False)


def test_table_from_fleet_option(fleet_file):
    result = invoke(["--fleet", str(fleet_file), "hosts"])
    assert result.exit_code == 0, result.output
    assert "fleet prod-east · 3 host(s)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "gpu-a01" in line)
    assert all(cell in row for cell in ("10.0.1.11", "2222", "canary", "rack=r1"))
    row = next(line for line in result.stdout.splitlines() if "gpu-a02" in line)
    assert "rack=r2, zone=b" in row and "main" in row
    assert result.stderr == ""


def test_json_from_environment_variable(fleet_file):
    result = invoke(["hosts", "--json"], env={"FLEETCTL_FLEET": str(fleet_file)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "schema": "fleetctl.hosts/v1",
        "fleet": "prod-east",
        "hosts": [
            {"name": "gpu-a01", "address": "10.0.1.11", "port": 2222, "ring": "canary", "labels": {"rack": "r1"}},
            {
                "name": "gpu-a02",
                "address": "gpu-a02",
                "port": None,
                "ring": "main",
                "labels": {"rack": "r2", "zone": "b"},
            },
            {"name": "gpu-b01", "address": "gpu-b01", "port": None, "ring": None, "labels": {}},
        ],
    }


def test_fleet_option_wins_over_the_environment(fleet_file, tmp_path):
    result = invoke(["--fleet", str(fleet_file), "hosts", "--json"], env={"FLEETCTL_FLEET": str(tmp_path / "no")})
    assert result.exit_code == 0 and json.loads(result.stdout)["fleet"] == "prod-east"


def test_default_is_fleet_toml_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "fleet.toml").write_text('[fleet]\nname = "here"\n')
    monkeypatch.chdir(tmp_path)
    result = invoke(["hosts", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {
        "schema": "fleetctl.hosts/v1",
        "fleet": "here",
        "hosts": [],
    }


@pytest.mark.parametrize(
    "limit, names",
    [
        ("gpu-a*", ["gpu-a01", "gpu-a02"]),
        ("ring=main,gpu-b01", ["gpu-a02", "gpu-b01"]),
        ("label=zone=b", ["gpu-a02"]),
        ("rack=r1", ["gpu-a01"]),
    ],
)
def test_limit_narrows_the_list(fleet_file, limit, names):
    result = invoke(["--fleet", str(fleet_file), "hosts", "--json", "--limit", limit])
    assert result.exit_code == 0, result.output
    assert [h["name"] for h in json.loads(result.stdout)["hosts"]] == names


def one_line_error(result):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_limit_that_matches_nothing_exits_2(fleet_file):
    result = invoke(["--fleet", str(fleet_file), "hosts", "-l", "ring=early"])
    assert one_line_error(result) == "error: --limit 'ring=early' matches no host in fleet prod-east"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[fleet]\nname = "x"\n[ssh]\nconnect_timeout_s = "10"\n',
            "{path}:4: ssh.connect_timeout_s: expected a number, got string",
        ),
        (
            '[fleet]\nname = "x"\n[[hosts]]\nname = "a"\n[[hosts]]\nname = "a"\n',
            "{path}:6: duplicate host name a (first at line 4)",
        ),
        ('[fleet]\nname = "x"\n[ssh\n', "{path}:3: TOML syntax error: Unexpected end of line (column 5)"),
        ('[fleet]\nnam = "x"\n', "{path}:2: unknown key fleet.nam (did you mean name?)"),
        (b'[fleet]\nname = "\xff"\n', "{path}:2: not UTF-8 text"),
    ],
)
def test_a_bad_fleet_file_exits_2_with_one_line(tmp_path, text, message):
    path = tmp_path / "fleet.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for as_json in ([], ["--json"]):
        result = invoke(["--fleet", str(path), "hosts", *as_json])
        assert one_line_error(result) == "error: " + message.format(path=path)


def test_a_missing_fleet_file_says_how_to_name_one(tmp_path):
    result = invoke(["hosts"], env={"FLEETCTL_FLEET": str(tmp_path / "nowhere.toml")})
    assert one_line_error(result) == (
        f"error: {tmp_path / 'nowhere.toml'}: no such fleet file (use --fleet or $FLEETCTL_FLEET)"
    )
    result = invoke(["--fleet", str(tmp_path), "hosts"])  # a folder is not a fleet file
    assert "no such fleet file" in one_line_error(result)
