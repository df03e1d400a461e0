"""`[maintain]` in the fleet file: defaults, values, and the lab's fleet file using the real table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fleetctl.core.fleet import MaintainSettings
from fleetctl.core.fleetfile import parse_fleet
from fleetctl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HEAD = '[fleet]\nname = "t"\n[[hosts]]\nname = "gpu-1"\n'


def test_without_the_table_the_defaults_hold():
    maintain = parse_fleet(HEAD, "fleet.toml").maintain
    assert maintain == MaintainSettings()
    assert (maintain.reboot_command, maintain.reboot_timeout_s, maintain.max_parallel, maintain.sudo) == (
        "systemctl reboot",
        900.0,
        1,
        False,
    )


@pytest.mark.parametrize(
    "table, expected",
    [
        ("", MaintainSettings()),
        ('reboot_command = "lab-reboot"', MaintainSettings(reboot_command="lab-reboot")),
        (
            "reboot_command = \"shutdown -r now 'kernel update'\"",
            MaintainSettings(reboot_command="shutdown -r now 'kernel update'"),
        ),
        ('reboot_command = "reboot\\t-f"', MaintainSettings(reboot_command="reboot\t-f")),  # a tab is a blank
        ("reboot_timeout_s = 1800", MaintainSettings(reboot_timeout_s=1800.0)),
        ("reboot_timeout_s = 0.5", MaintainSettings(reboot_timeout_s=0.5)),
        ("max_parallel = 4", MaintainSettings(max_parallel=4)),
        ("sudo = true", MaintainSettings(sudo=True)),
        (
            'reboot_command = "sudo -n reboot"\nreboot_timeout_s = 600\nmax_parallel = 2\nsudo = false',
            MaintainSettings("sudo -n reboot", 600.0, 2, False),
        ),
    ],
)
def test_values(table, expected):
    maintain = parse_fleet(f"{HEAD}[maintain]\n{table}\n", "fleet.toml").maintain
    assert maintain == expected
    assert isinstance(maintain.reboot_timeout_s, float) and isinstance(maintain.max_parallel, int)


def test_the_settings_are_frozen():
    with pytest.raises(AttributeError):
        MaintainSettings().sudo = True  # type: ignore[misc]


def test_a_bad_value_names_its_line():
    with pytest.raises(ConfigError) as e:
        parse_fleet(f'{HEAD}[maintain]\nsudo = true\nreboot_command = "a \'b"\n', "fleet.toml")
    assert str(e.value).startswith("fleet.toml:7: maintain.reboot_command: must be a command line a shell can split")


def test_the_labs_fleet_file_carries_the_labs_reboot_command(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from labkit.files import REBOOT_COMMAND, LabPaths, render_fleet
        from labkit.layout import plan_layout
        from labkit.spec import parse_spec
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    layout = plan_layout(parse_spec({"hosts": [{"name": "a", "ring": "canary"}, {"name": "b"}]}))
    text = render_fleet(LabPaths(tmp_path), layout)
    fleet = parse_fleet(text, str(tmp_path / "fleet.toml"))
    assert fleet.maintain.reboot_command == REBOOT_COMMAND == "lab-reboot"
    assert [h.name for h in fleet.hosts] == ["a", "b"]
