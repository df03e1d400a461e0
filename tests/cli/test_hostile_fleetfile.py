"""Hostile fleet files, profiles, matrix files and arguments: each is one line naming what is wrong, a documented
exit code, no traceback, and nothing run on this machine. Table-driven: input -> exit code and first line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
HEAD = '[fleet]\nname = "t"\n'  # the case's own text starts on line 3
HOST = HEAD + '[[hosts]]\nname = "gpu-1"\n'  # a host's own keys start on line 5
NAME_RULE = '(letters, digits, ".", "-" or "_", not starting with "-" or ".")'
NOT_A_HOST = f"must be a host name, an IP address or an ssh_config alias {NAME_RULE}"
INJECT_PROXY = "x:22 -oProxyCommand=touch${IFS}/tmp/fleetctl-pwned"
INJECT_EXEC = "$(touch /tmp/fleetctl-pwned2)"

# (id, fleet file text (str) or bytes, exit code, first line of stderr with {f} for the file's path)
FLEET_CASES = [
    (
        "injection-proxycommand",
        HOST + f'address = "{INJECT_PROXY}"\n',
        2,
        f'error: {{f}}:5: hosts.address: {NOT_A_HOST}, got "{INJECT_PROXY}"',
    ),
    (
        "injection-match-exec",
        HOST + f'address = "{INJECT_EXEC}"\n',
        2,
        f'error: {{f}}:5: hosts.address: {NOT_A_HOST}, got "{INJECT_EXEC}"',
    ),
    ("leading-dash", HOST + 'address = "-oProxyCommand=id"\n', 2, '{NOT}-oProxyCommand=id"'),
    ("backticks", HOST + 'address = "`id`"\n', 2, '{NOT}`id`"'),
    ("newline", HOST + 'address = "gpu\\nid"\n', 2, '{NOT}gpu\\nid"'),
    ("escape-sequence", HOST + 'address = "gpu\\u001b[2J"\n', 2, '{NOT}gpu\\u001b[2J"'),
    ("pipe", HOST + 'address = "gpu|nc"\n', 2, '{NOT}gpu|nc"'),
    (
        "dns-label-64",
        HOST + f'address = "{"a" * 64}.example"\n',
        2,
        'error: {f}:5: hosts.address: label "aaaaaaaaaaaaaaaaaaaa..." is 64 characters long (at most 63)',
    ),
    (
        "dns-label-64-in-the-name",
        HEAD + f'[[hosts]]\nname = "{"b" * 64}"\n',
        2,
        'error: {f}:4: hosts.name (the address when none is given): label "bbbbbbbbbbbbbbbbbbbb..." is 64 characters '
        "long (at most 63)",
    ),
    (
        "ipv6-bad-zone",
        HOST + 'address = "[fe80::1%eth0;id]"\n',
        2,
        'error: {f}:5: hosts.address: must be an IPv6 address ([addr] or [addr%zone]), got "[fe80::1%eth0;id]"',
    ),
    (
        "user-semicolon",
        HEAD + '[ssh]\nuser = "ops;touch x"\n',
        2,
        f'error: {{f}}:4: ssh.user: must be a user name {NAME_RULE}, got "ops;touch x"',
    ),
    (
        "user-leading-dash",
        HEAD + '[ssh]\nuser = "-oProxyCommand=id"\n',
        2,
        f'error: {{f}}:4: ssh.user: must be a user name {NAME_RULE}, got "-oProxyCommand=id"',
    ),
    ("jump-empty-hop", HEAD + '[ssh]\nproxy_jump = "a,,b"\n', 2, "error: {f}:4: ssh.proxy_jump: hop 2 is empty"),
    (
        "jump-bad-port",
        HEAD + '[ssh]\nproxy_jump = "ops@bastion:abc"\n',
        2,
        'error: {f}:4: ssh.proxy_jump: hop 1 "ops@bastion:abc": port must be a number from 1 to 65535, got "abc"',
    ),
    (
        "jump-substitution",
        HEAD + '[ssh]\nproxy_jump = "bastion,$(id)"\n',
        2,
        f'error: {{f}}:4: ssh.proxy_jump: hop 2 "$(id)": host {NOT_A_HOST}, got "$(id)"',
    ),
    (
        "router-port-99999",
        HEAD + '[router]\nurl = "http://127.0.0.1:99999"\n',
        2,
        'error: {f}:4: router.url: port must be a number from 1 to 65535, got "99999"',
    ),
    (
        "host-name-markup",
        HEAD + '[[hosts]]\nname = "[red]gpu"\n',
        2,
        'error: {f}:4: hosts.name: must be letters, digits, ".", "_" or "-" (starting with a letter or digit), '
        'got "[red]gpu"',
    ),
    (
        "duplicate-host",
        HOST + '[[hosts]]\nname = "gpu-1"\n',
        2,
        "error: {f}:6: duplicate host name gpu-1 (first at line 4)",
    ),
    (
        "key-twice",
        HOST + 'address = "a"\naddress = "b"\n',
        2,
        "error: {f}:6: hosts.address is defined twice (first at line 5)",
    ),
    (
        "unterminated-string",
        HEAD + '[ssh]\nuser = "ops\n',
        2,
        r"error: {f}:4: TOML syntax error: Control characters (codes less than 0x1f and 0x7f) are not allowed in "
        r"strings, use \u000a instead (column 12)",
    ),
    ("not-utf8", HEAD.encode() + b'[ssh]\nuser = "\xff"\n', 2, "error: {f}:4: not UTF-8 text"),
    (
        "hosts-as-table",
        HEAD + '[hosts]\nname = "a"\n',
        2,
        "error: {f}:3: hosts: expected an array of tables ([[hosts]]), got table",
    ),
    (
        "maintain-unknown-key",
        HOST + '[maintain]\nreboot_cmd = "reboot"\n',
        2,
        "error: {f}:6: unknown key maintain.reboot_cmd (did you mean reboot_command?)",
    ),
    (
        "maintain-reboot-command-newline",
        HOST + '[maintain]\nreboot_command = "reboot\\nrm -rf /"\n',
        2,
        "error: {f}:6: maintain.reboot_command: must be one command line without control characters, "
        'got "reboot\\nrm -rf /"',
    ),
    (
        "maintain-reboot-command-nul",
        HOST + '[maintain]\nreboot_command = "reboot\\u0000"\n',
        2,
        "error: {f}:6: maintain.reboot_command: must be one command line without control characters, "
        'got "reboot\\u0000"',
    ),
    (
        "maintain-reboot-command-escape",
        HOST + '[maintain]\nreboot_command = "reboot\\u001b[2J"\n',
        2,
        "error: {f}:6: maintain.reboot_command: must be one command line without control characters, "
        'got "reboot\\u001b[2J"',
    ),
    (
        "maintain-reboot-command-open-quote",
        HOST + "[maintain]\nreboot_command = 'systemctl \"reboot'\n",
        2,
        "error: {f}:6: maintain.reboot_command: must be a command line a shell can split (No closing quotation), "
        'got "systemctl \\"reboot"',
    ),
    (
        "maintain-reboot-command-blank",
        HOST + '[maintain]\nreboot_command = "   "\n',
        2,
        "error: {f}:6: maintain.reboot_command: must name a command, got only blanks",
    ),
    (
        "maintain-reboot-command-empty",
        HOST + '[maintain]\nreboot_command = ""\n',
        2,
        "error: {f}:6: maintain.reboot_command: must not be empty",
    ),
    (
        "maintain-reboot-command-array",
        HOST + '[maintain]\nreboot_command = ["systemctl", "reboot"]\n',
        2,
        "error: {f}:6: maintain.reboot_command: expected a string, got array",
    ),
    (
        "maintain-timeout-zero",
        HOST + "[maintain]\nreboot_timeout_s = 0\n",
        2,
        "error: {f}:6: maintain.reboot_timeout_s: must be greater than 0, got 0",
    ),
    (
        "maintain-timeout-inf",
        HOST + "[maintain]\nreboot_timeout_s = inf\n",
        2,
        "error: {f}:6: maintain.reboot_timeout_s: must be a finite number, got inf",
    ),
    (
        "maintain-max-parallel-zero",
        HOST + "[maintain]\nmax_parallel = 0\n",
        2,
        "error: {f}:6: maintain.max_parallel: must be at least 1, got 0",
    ),
    (
        "maintain-max-parallel-float",
        HOST + "[maintain]\nmax_parallel = 1.5\n",
        2,
        "error: {f}:6: maintain.max_parallel: expected an integer, got float",
    ),
    (
        "maintain-sudo-string",
        HOST + '[maintain]\nsudo = "yes"\n',
        2,
        "error: {f}:6: maintain.sudo: expected true or false, got string",
    ),
    (
        "maintain-as-array",
        HOST + "[[maintain]]\nsudo = true\n",
        2,
        "error: {f}:5: maintain: expected a table, got array",
    ),
]


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(app, args, env={"FLEETCTL_FLEET": None, "COLUMNS": "200", **(env or {})})


def first_line(result) -> str:
    return (result.stderr.splitlines() or [""])[0]


@pytest.mark.parametrize("text, code, expected", [c[1:] for c in FLEET_CASES], ids=[c[0] for c in FLEET_CASES])
def test_a_hostile_fleet_file(tmp_path, text, code, expected):
    path = tmp_path / "fleet.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    expected = expected.replace("{NOT}", f'error: {{f}}:5: hosts.address: {NOT_A_HOST}, got "')
    for command in (["hosts"], ["hosts", "--json"]):  # every command reads the fleet file through one parser
        result = invoke(["--fleet", str(path), *command])
        assert (result.exit_code, first_line(result)) == (code, expected.replace("{f}", str(path))), command
        assert "Traceback" not in result.output and result.stdout == ""


def changed(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new`` once (``new`` appended when ``old`` is empty)."""
    if not old:
        return text + new
    assert old in text
    return text.replace(old, new, 1)


def line_of(text: str, new: str) -> int:
    """The last line that holds the first line of what was put in."""
    needle = new.strip().splitlines()[0]
    return max(i for i, row in enumerate(text.splitlines(), 1) if needle in row)


PROFILE = (ROOT / "profiles" / "llama31-8b-vllm011.toml").read_text()

# (id, replaced text in a good profile (old, new), exit code, first line with {p} for the profile's path)
PROFILE_CASES = [
    ("syntax", ("[image]", "[image"), 2, "error: {p}:{line}: not valid TOML: Unexpected end of line"),
    ("table-twice", ("", '\n[image]\nref = "x"\n'), 2, "error: {p}:{line}: image is defined twice (first at line"),
    ("unknown-table", ("[image]", "[imgae]"), 2, "error: {p}:{line}: unknown table [imgae]"),
    (
        "cuda-not-a-version",
        ('cuda = "12.8"', 'cuda = "12.8.x"'),
        2,
        'error: {p}:{line}: image.cuda: must be a version, got "12.8.x"',
    ),
    (
        "cuda-a-number",
        ('cuda = "12.8"', "cuda = 12.8"),
        2,
        "error: {p}:{line}: image.cuda: expected a string, got float (write versions and specifiers in quotes)",
    ),
]


@pytest.mark.parametrize("change, code, expected", [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES])
def test_a_hostile_profile(tmp_path, change, code, expected):
    text = changed(PROFILE, *change)
    path = tmp_path / "bad-profile.toml"
    path.write_text(text)
    line = line_of(text, change[1])
    result = invoke(["--fleet", str(tmp_path / "fleet.toml"), "check", "--profile", str(path), "--inventory", "x.json"])
    assert result.exit_code == code and first_line(result).startswith(expected.format(p=path, line=line))


MATRIX_CASES = [
    ("syntax", "gpus.toml", ('model = "', 'model = "\\q'), 2, "error: {m}:{line}: not valid TOML: "),
    (
        "unknown-table",
        "runtime.toml",
        ("", "\n[nonsense]\nx = 1\n"),
        2,
        "error: {m}:{line}: unknown table [nonsense] (known: ",
    ),
]


@pytest.mark.parametrize(
    "file, change, code, expected", [c[1:] for c in MATRIX_CASES], ids=[c[0] for c in MATRIX_CASES]
)
def test_a_hostile_matrix(tmp_path, file, change, code, expected):
    shutil.copytree(ROOT / "profiles" / "matrix", tmp_path / "matrix")
    path = tmp_path / "matrix" / file
    text = changed(path.read_text(), *change)
    path.write_text(text)
    line = line_of(text, change[1])
    result = invoke(
        ["--fleet", str(tmp_path / "fleet.toml"), "matrix", "show", "--cuda", "12.8"],
        {"FLEETCTL_PROFILES": str(tmp_path)},
    )
    assert result.exit_code == code and first_line(result).startswith(expected.format(m=path, line=line))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--cuda", "12.8.x"], "error: --cuda '12.8.x' is not a CUDA version (X.Y or X.Y.Z, e.g. 12.8)"),
        (["--cuda", "12.8; id"], "error: --cuda '12.8; id' is not a CUDA version (X.Y or X.Y.Z, e.g. 12.8)"),
        (["--cuda", "99.1"], "error: CUDA 99.1 is not in the matrix (known: "),
    ],
)
def test_hostile_matrix_show_arguments(args, expected):
    result = invoke(["matrix", "show", *args], {"FLEETCTL_PROFILES": str(ROOT / "profiles")})
    assert result.exit_code == 2 and first_line(result).startswith(expected) and len(result.stderr.splitlines()) <= 2


LOOPBACK_BASTION = "Host bastion\n  HostName 127.0.0.1\n  Port 9\n"  # were the guard gone: no traffic off this machine
SSH_CONFIGS = {
    "proxycommand": (
        LOOPBACK_BASTION + "Host *\n  ProxyCommand ssh -W %h:%p bastion\n",
        "x:22 -oProxyCommand=touch${{IFS}}{marker}",
    ),
    "match-exec": ('Match exec "test %h = jumpbox"\n  User nobody\n', "$(touch {marker})"),
}


@pytest.mark.parametrize("config", SSH_CONFIGS)
def test_the_injections_of_the_issue_no_longer_run(tmp_path, config):
    """With an ssh_config that hands %h to a shell, a fleet file whose address is a command fails at parse (exit
    2) and the command never runs: the marker file does not appear."""
    ssh_config, address = SSH_CONFIGS[config]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(ssh_config)
    marker = tmp_path / "marker" / "pwned"
    marker.parent.mkdir()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(HOST + f'address = "{address.format(marker=marker)}"\n')
    env = {**os.environ, "HOME": str(home), "FLEETCTL_FLEET": str(fleet)}
    for command in (["inventory"], ["check", "--profile", "llama31-8b-vllm011"]):
        done = subprocess.run(
            [sys.executable, "-m", "fleetctl", *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: {fleet}:5: hosts.address: {NOT_A_HOST}, got ")
        assert list(marker.parent.iterdir()) == []
