"""ssh_config as OpenSSH reads it: fleetctl's resolution against ``ssh -G`` itself, config by config.

The oracle is the installed OpenSSH client: for every host, the hostname, user, port and jump hosts fleetctl
resolves equal what ``ssh -G -F CONFIG HOST`` prints, and the identity files (with their ``%`` tokens and ``~``
expanded) equal the ones ``ssh -v`` says it tries. Nothing connects anywhere: ``ssh -v`` is given a ProxyCommand
that closes at once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetctl.core.fleet import Host, SshSettings
from fleetctl.core.sshtarget import parse_jump_chain, resolve_target
from fleetctl.errors import ConfigError
from fleetctl.transport.sshconfig import SshConfigFiles, local_info

SSH = shutil.which("ssh")
pytestmark = pytest.mark.skipif(SSH is None, reason="needs OpenSSH's ssh client (apt-get install openssh-client)")

CONFIGS = {
    "include-then-defaults": (
        {
            "config": "Include config.d/*\nHost *\n  User defaultuser\n  IdentityFile ~/.ssh/prod_%r_ed25519\n",
            "config.d/10-prod": "Host gpu-*.prod\n  User ops\n",
            "config.d/20-lab": "Host lab-?\n  HostName 10.9.0.%h\n  Port 2201\n",
        },
        ["gpu-01.prod", "web.dev", "lab-1"],
    ),
    "negation-and-first-value-wins": (
        {
            "config": "Host gpu-* !gpu-99\n  User a\n  Port 2022\nHost gpu-*\n  User b\n  Port 22\n"
            "Host *\n  User c\n  IdentityFile ~/.ssh/first\n  IdentityFile ~/.ssh/second\n  IdentityFile ~/.ssh/first\n",
        },
        ["gpu-1", "gpu-99", "other"],
    ),
    "proxy-jump": (
        {
            "config": "Host bastion\n  HostName 203.0.113.5\n  User jumper\n  Port 2200\n"
            "Host gpu-*\n  ProxyJump bastion\nHost db-*\n  ProxyJump ops@bastion:2022,jump2\n"
            "Host jump2\n  HostName 198.51.100.7\nHost direct\n  ProxyJump none\nHost *\n  ProxyJump bastion\n",
        },
        ["gpu-3", "db-1", "direct", "elsewhere"],
    ),
    "tokens": (
        {
            "config": "Host short-*\n  HostName %h.example.net\nHost *\n  User tok\n  IdentityFile %d/.ssh/%h_%r_%n_%p\n"
            "  IdentityFile ~/.ssh/id_%u_%L_%l_%C_%k_%i\n  IdentityFile ~/.ssh/lit%%pct\n",
        },
        ["short-1", "plain.example.org"],
    ),
    "conditional-and-nested-include": (
        {
            "config": "Host *.prod\n  Include prod/*.conf\n  Port 2300\nHost alias1\n  HostName 10.0.0.5\n"
            "Match host 10.0.*\n  User matched\nHost *\n  User fallback\n",
            "prod/a.conf": "User produser\nInclude prod/deeper\nHost db*.prod\n  Port 5022\n",
            "prod/deeper": "IdentityFile ~/.ssh/deep_%h\n",
        },
        ["db1.prod", "web.prod", "alias1", "dev.test"],
    ),
    "match-keywords-and-syntax": (
        {
            "config": 'Host=eq\n  HostName="10.1.1.1"\nMatch originalhost m-* !host 10.*\n  User m\n'
            "Match user root originalhost u-*\n  Port 2400\nMatch localuser root host u-*\n  User lu\n"
            "Match all\n  User everyone\n",
        },
        ["eq", "m-1", "u-2", "z"],
    ),
}


def _write(home: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = home / ".ssh" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return home / ".ssh" / "config"


def _ssh_g(home: Path, config: Path, host: str, *extra: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [SSH, "-G", "-F", str(config), *extra, host],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, []).append(value)
    return seen


def _ssh_identities(home: Path, config: Path, host: str) -> list[str]:
    """The identity files ``ssh -v`` loads for ``host``, tokens expanded (it dies at the banner: nothing dials)."""
    out = subprocess.run(
        [SSH, "-v", "-F", str(config), "-o", "ProxyCommand=exec cat /dev/null", "-o", "BatchMode=yes", host, "true"],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    files = re.findall(r"identity file (.+) type -?\d+$", out.stderr, re.MULTILINE)
    return [f for f in files if not f.endswith("-cert")]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fleetctl_resolves_what_openssh_resolves(tmp_path, name):
    files, hosts = CONFIGS[name]
    config = _write(tmp_path, files)
    conf = SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh"))
    local = local_info()
    for alias in hosts:
        target = resolve_target(Host(alias, alias), SshSettings(), conf.lookup, local=local)
        ssh = _ssh_g(tmp_path, config, alias)
        e = target.endpoint
        assert (e.hostname, str(e.port), e.user or local.user) == (
            ssh["hostname"][0],
            ssh["port"][0],
            ssh["user"][0],
        ), alias
        if "identityfile" in conf.lookup(alias):
            assert list(e.identity_files) == _ssh_identities(tmp_path, config, alias), alias
        jump = ssh.get("proxyjump", ["none"])[0]
        assert len(target.jumps) == len(parse_jump_chain(jump)), alias
        for hop, (user, hop_name, port) in zip(target.jumps, parse_jump_chain(jump), strict=True):
            extra = [*(["-l", user] if user else []), *(["-p", str(port)] if port else [])]
            seen = _ssh_g(tmp_path, config, hop_name, *extra)
            assert (hop.hostname, str(hop.port), hop.user or local.user) == (
                seen["hostname"][0],
                seen["port"][0],
                seen["user"][0],
            ), (alias, hop_name)


def test_match_exec_is_refused_for_hosts_it_would_apply_to_and_never_runs(tmp_path):
    pwned = tmp_path / "pwned"
    config = _write(tmp_path, {"config": f'Match host jump* exec "touch {pwned}"\n  User x\nHost *\n  User ok\n'})
    conf = SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh"))
    assert conf.lookup("gpu1")["user"] == "ok"  # the block cannot apply: nothing to refuse
    with pytest.raises(ConfigError, match=r"config:1: Match exec is not supported \(fleetctl never runs commands"):
        conf.lookup("jumpbox")
    assert not pwned.exists()


def test_unsupported_match_keyword_is_refused_not_taken_as_matching(tmp_path):
    config = _write(tmp_path, {"config": "Match localnetwork 10.0.0.0/8\n  User x\n"})
    with pytest.raises(ConfigError, match="config:1: Match localnetwork is not supported"):
        SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh")).lookup("any")


def test_include_loop_stops_at_openssh_depth(tmp_path):
    config = _write(tmp_path, {"config": "Include config\n"})
    with pytest.raises(ConfigError, match="Include nested more than 16 deep"):
        SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("Host\n", "config:1: cannot parse 'Host'"),
        ("Match host\n", "config:1: Match host needs an argument"),
        ("Host 'unterminated\n", "config:1: cannot parse host line: No closing quotation"),
        ("!!!\n", "config:1: cannot parse '!!!'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, message):
    config = _write(tmp_path, {"config": text})
    with pytest.raises(ConfigError) as e:
        SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh"))
    assert str(e.value).endswith(message)


def test_an_include_inside_a_refused_match_block_is_refused_too(tmp_path):
    config = _write(
        tmp_path,
        {"config": 'Match exec "true"\n  Include inner\nHost *\n  User ok\n', "inner": "Host gpu*\n  User x\n"},
    )
    conf = SshConfigFiles.read(str(config), ssh_dir=str(tmp_path / ".ssh"))
    with pytest.raises(ConfigError, match="config:1: Match exec is not supported"):
        conf.lookup("gpu1")
