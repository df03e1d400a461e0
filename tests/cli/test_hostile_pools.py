"""Hostile pools: fleet files with ``[[pools]]``, served model names in profiles, and ``--pool`` arguments. Each
is one line naming what is wrong, exit 2, no traceback, nothing changed. Table-driven: input -> exit code and
first line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
HOSTS = '[fleet]\nname = "t"\n' + "".join(
    f'[[hosts]]\nname = "gpu-{i}"\nlabels = {{ pool = "{p}" }}\n' for i, p in ((1, "chat"), (2, "chat"), (3, "small"))
)
CHAT = '[[pools]]\nname = "chat"\nprofile = "chat"\nhosts = "label=pool=chat"\n'
SMALL = '[[pools]]\nname = "small"\nprofile = "small"\nhosts = "gpu-3"\n'
PROFILE = """[profile]
name = "{name}"
[image]
ref = "lab/vllm:stable"
cuda = "12.8"
vllm = "0.11.0"
[serve]
model = "{model}"
{extra}
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The line of the ``nth`` line of ``text`` that contains ``needle``."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[nth - 1]


# (id, fleet file text, first line of stderr: {f} the file, {L:needle:n} the line of needle's nth occurrence)
FLEET_CASES = [
    (
        "host-in-two-pools",
        HOSTS + CHAT + SMALL.replace('"gpu-3"', '"gpu-2,gpu-3"'),
        'error: {f}:{"gpu-2,gpu-3":1}: host gpu-2 is in two pools: chat (line {[[pools]]:1}) and small',
    ),
    (
        "pool-with-no-host",
        HOSTS + CHAT.replace("pool=chat", "pool=none"),
        'error: {f}:{label=pool=none:1}: pool chat: hosts = "label=pool=none" selects no host',
    ),
    (
        "unknown-profile",
        HOSTS + CHAT.replace('profile = "chat"', 'profile = "nope"'),
        "error: {f}:{[[pools]]:1}: pool chat: unknown profile 'nope'",
    ),
    (
        "same-model-twice",
        HOSTS + CHAT + SMALL.replace('profile = "small"', 'profile = "chat2"'),
        "error: {f}:{[[pools]]:2}: pools chat and small both serve model chat-model",
    ),
    (
        "router-min-serving-with-pools",
        HOSTS.replace("[[hosts]]", "[router]\nmin_serving = 2\n[[hosts]]", 1) + CHAT,
        "error: {f}:{min_serving = 2:1}: [router] min_serving cannot be set together with [[pools]]: set min_serving in each pool",
    ),
    (
        "duplicate-pool-name",
        HOSTS + CHAT + SMALL.replace('name = "small"', 'name = "chat"'),
        'error: {f}:{name = "chat":2}: duplicate pool name chat (first at line {[[pools]]:1})',
    ),
    (
        "pool-name-markup",
        HOSTS + CHAT.replace('name = "chat"', 'name = "[red]x"'),
        'error: {f}:{name = "[red]x":1}: pools.name: must be letters',
    ),
    (
        "pool-without-profile",
        HOSTS + CHAT.replace('profile = "chat"\n', ""),
        'error: {f}:{[[pools]]:1}: pool without profile (every [[pools]] needs profile = "...")',
    ),
    (
        "min-serving-negative",
        HOSTS + CHAT + "min_serving = -1\n",
        "error: {f}:{min_serving = -1:1}: pools.min_serving: must be at least 0, got -1",
    ),
    (
        "min-serving-string",
        HOSTS + CHAT + 'min_serving = "2"\n',
        'error: {f}:{min_serving = "2":1}: pools.min_serving: expected an integer, got string',
    ),
    (
        "hosts-bad-pattern",
        HOSTS + CHAT.replace("label=pool=chat", "label=pool"),
        "error: {f}:{hosts = \"label=pool\":1}: pools.hosts: 'label=pool': 'label=pool' needs label=KEY=VALUE",
    ),
    ("unknown-pool-key", HOSTS + CHAT + 'model = "x"\n', 'error: {f}:{model = "x":1}: unknown key pools.model'),
    (
        "pools-not-array",
        'pools = "chat"\n' + HOSTS,
        "error: {f}:{pools = :1}: pools: expected an array of tables ([[pools]]), got string",
    ),
]


def expected_line(template: str, path: Path, text: str) -> str:
    import re

    def line(m: re.Match[str]) -> str:
        needle, nth = m.group(1).rsplit(":", 1)
        return str(line_of(text, needle, int(nth)))

    return re.sub(r"\{([^{}]*?:\d+)\}", line, template).replace("{f}", str(path))


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles" / "matrix", folder / "matrix")
    for name, model, extra in (
        ("chat", "lab/tiny-llama", 'served_model_name = "chat-model"'),
        ("chat2", "lab/other", 'args = ["--served-model-name", "chat-model", "alias"]'),
        ("small", "lab/other-model", ""),
    ):
        (folder / f"{name}.toml").write_text(PROFILE.format(name=name, model=model, extra=extra))
    return folder


def invoke(args: list[str], profiles: Path):
    return CliRunner().invoke(app, args, env={"FLEETCTL_PROFILES": str(profiles), "COLUMNS": "250"})


def first_line(result) -> str:
    lines = result.stderr.splitlines()
    return lines[0] if lines else ""


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FLEET_CASES], ids=[c[0] for c in FLEET_CASES])
def test_a_hostile_fleet_file_with_pools(tmp_path, profiles, text, expected):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    result = invoke(["--fleet", str(path), "hosts"], profiles)
    assert (result.exit_code, first_line(result)[: len(expected_line(expected, path, text))]) == (
        2,
        expected_line(expected, path, text),
    )
    assert "Traceback" not in result.output and result.stdout == ""


POOLED = HOSTS + CHAT + SMALL
NAMES = "chat, small"
# (id, fleet file text, arguments, first line of stderr)
COMMAND_CASES = [
    (
        "deploy-without-pool",
        POOLED,
        ["deploy", "--profile", "chat"],
        f"error: deploy: this fleet has pools ({NAMES}): say which with --pool NAME",
    ),
    (
        "upgrade-without-pool",
        POOLED,
        ["upgrade", "--profile", "chat", "--plan"],
        f"error: upgrade: this fleet has pools ({NAMES}): say which with --pool NAME",
    ),
    (
        "rollback-without-pool",
        POOLED,
        ["rollback", "--yes"],
        f"error: rollback: this fleet has pools ({NAMES}): say which with --pool NAME",
    ),
    (
        "deploy-unknown-pool",
        POOLED,
        ["deploy", "--pool", "nope"],
        f"error: --pool 'nope': no such pool (pools: {NAMES})",
    ),
    (
        "upgrade-unknown-pool",
        POOLED,
        ["upgrade", "--pool", "[red]x", "--plan"],
        "error: --pool '[red]x': no such pool (pools: chat, small)",
    ),
    (
        "deploy-pool-with-profile",
        POOLED,
        ["deploy", "--pool", "chat", "--profile", "small"],
        "error: deploy --pool chat: the pool's profile is the one its [[pools]] table declares (chat); leave out --profile (to move the pool, change the fleet file or use upgrade)",
    ),
    (
        "pool-on-a-fleet-without-pools",
        HOSTS,
        ["deploy", "--pool", "chat"],
        "error: --pool 'chat': no such pool (pools: none: the fleet file has no [[pools]])",
    ),
    ("deploy-without-profile", HOSTS, ["deploy"], "error: deploy needs --profile NAME"),
    (
        "limit-outside-the-pool",
        POOLED,
        ["deploy", "--pool", "small", "--limit", "gpu-1"],
        "error: --limit 'gpu-1' matches no host in fleet t, pool small",
    ),
]


@pytest.mark.parametrize(
    ("text", "args", "expected"), [c[1:] for c in COMMAND_CASES], ids=[c[0] for c in COMMAND_CASES]
)
def test_hostile_pool_arguments(tmp_path, profiles, text, args, expected):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    result = invoke(["--fleet", str(path), *args], profiles)
    assert (result.exit_code, first_line(result)) == (2, expected)
    assert "Traceback" not in result.output
    assert not (tmp_path / ".fleetctl" / "state.json").exists()


PROFILE_CASES = [
    ("served-name-with-space", 'served_model_name = "a b"', "serve.served_model_name: must be a name without spaces"),
    (
        "served-name-escape",
        'served_model_name = "a\\u001b[2J"',
        "serve.served_model_name: must be a name without spaces",
    ),
    ("served-name-not-string", "served_model_name = 3", "served_model_name"),
    (
        "served-name-disagrees-with-args",
        'served_model_name = "a"\nargs = ["--served-model-name", "b"]',
        "served_model_name = 'a' but args give --served-model-name 'b'",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES])
def test_a_hostile_served_model_name(tmp_path, profiles, extra, expected):
    (profiles / "chat.toml").write_text(PROFILE.format(name="chat", model="m", extra=extra))
    path = tmp_path / "fleet.toml"
    path.write_text(POOLED)
    result = invoke(["--fleet", str(path), "hosts"], profiles)
    line = first_line(result)
    assert (
        result.exit_code == 2
        and line.startswith(f"error: {profiles / 'chat.toml'}:")
        or line.startswith(f"error: {path}:")
    ), line
    assert expected in line and "\x1b" not in result.output


def test_an_upgrade_that_renames_the_pools_model_is_refused_before_any_host_is_touched(tmp_path, profiles):
    from fleetctl.core.fleetstate import FleetState, ServingRecord
    from fleetctl.services.files import load_fleet
    from fleetctl.services.statefile import save_state

    path = tmp_path / "fleet.toml"
    path.write_text(POOLED)
    (profiles / "renamed.toml").write_text(PROFILE.format(name="renamed", model="lab/tiny-llama", extra=""))
    state = FleetState()
    for h in ("gpu-1", "gpu-2"):
        state = state.with_serving(
            ServingRecord(h, f"http://{h}:8000", "chat", "lab/vllm:stable", "r1", "x", "chat-model")
        )
    save_state(load_fleet(str(path)), state)
    result = invoke(["--fleet", str(path), "upgrade", "--pool", "chat", "--profile", "renamed", "--plan"], profiles)
    assert (result.exit_code, first_line(result)) == (
        2,
        "error: pool chat serves model chat-model and the new profile serves lab/tiny-llama: clients asking for "
        "the old name would get 404s from upgraded hosts; add --rename if you mean it",
    )
