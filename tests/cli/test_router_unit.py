"""``fleetctl router unit`` prints a systemd unit for ``router run``; a path the unit cannot carry is one line,
exit 2."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from fleetctl.cli.app import app

FLEET = '[fleet]\nname = "lab"\n\n[router]\nurl = "http://127.0.0.1:30000"\n'


def unit(path, *args):
    return CliRunner().invoke(app, ["--fleet", str(path), "router", "unit", *args])


def test_the_unit_runs_router_run_for_this_fleet_file_as_the_given_user(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    result = unit(path, "--user", "fleet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"ExecStart={sys.executable} -m fleetctl --fleet {path} router run" in lines
    assert "User=fleet" in lines and "Restart=always" in lines and "KillSignal=SIGTERM" in lines


def test_a_fleet_path_the_unit_cannot_carry_is_one_line_exit_2(tmp_path):
    folder = tmp_path / "my fleet"
    folder.mkdir()
    (folder / "fleet.toml").write_text(FLEET)
    result = unit(folder / "fleet.toml", "--user", "fleet")
    assert result.exit_code == 2 and result.stdout == ""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "cannot go into a systemd unit" in errors[0]


def test_a_user_with_a_semicolon_is_refused(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    assert unit(path, "--user", "root;id").exit_code == 2


def test_router_run_at_a_url_fleetctl_cannot_start_is_one_line_exit_2(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.replace("http://127.0.0.1:30000", "https://127.0.0.1:30000"))
    result = CliRunner().invoke(app, ["--fleet", str(path), "router", "run"])
    assert result.exit_code == 2 and "plain http:// router only" in result.stderr
    assert "Traceback" not in result.output
