"""The lab folder: paths, each node's session environment, fleet.toml, known_hosts and state.json."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import commands
from .layout import Layout, Node

STATE_SCHEMA = "fleetctl.lab/v1"
SYSTEM_PATH = commands.SYSTEM_PATH  # Debian's own tools (and its /usr/bin/python3), nothing else
ROUTER_URL = "http://127.0.0.1:30000"
REBOOT_COMMAND = "lab-reboot"  # the lab's reboot command: a stand-in that exists only on lab hosts (standins)
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def fleet(self) -> Path:
        return self.root / "fleet.toml"

    @property
    def identity(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh" / "config"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "ssh" / "authorized_keys"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def nopython_bin(self) -> Path:
        return self.root / "nopython-bin"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    def node_dir(self, node: Node) -> Path:
        return self.root / "bastion" if node.host is None else self.root / "hosts" / node.name

    def docker_dir(self, node: Node) -> Path:
        return self.node_dir(node) / "docker"

    def made(self) -> list[Path]:
        """Everything `up` puts in the lab folder (what `down` removes)."""
        return [
            self.state,
            self.fleet,
            self.root / "ssh",
            self.lib,
            self.nopython_bin,
            self.profiles,
            self.root / "bastion",
            self.root / "hosts",
            self.root / "power",
        ]


def session_env(paths: LabPaths, node: Node, docker_host: str | None = None) -> dict[str, str]:
    """What every SSH session on this node sees (sshd SetEnv): its own fake GPU, tools, home and, with
    docker_host, its own Docker daemon (so `docker` and docker-py's `docker system dial-stdio` reach it)."""
    base = paths.node_dir(node)
    # Each node gets its own HOME so the machine's real root dotfiles (which may put another python3 on the
    # PATH) do not leak into lab sessions.
    env = {"HOME": str(base / "home")}
    if node.host is None:
        return {**env, "PATH": SYSTEM_PATH}
    system = str(paths.nopython_bin) if not node.host.python3 else SYSTEM_PATH
    env.update(PATH=f"{base / 'bin'}:{system}", FAKE_NVML_CONFIG=str(base / "nvml.conf"))
    if node.host.nvml != "library-missing":
        env["LD_LIBRARY_PATH"] = str(base / "lib")
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


def fill_nopython_bin(target: Path) -> None:
    """A folder of links to Debian's tools minus python*: the system PATH of a host without python3."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in dict.fromkeys(os.path.realpath(d) for d in SYSTEM_PATH.split(":")):
        for name in sorted(os.listdir(folder)):
            link = target / name
            if name.startswith(("python", "pydoc")) or os.path.lexists(link):
                continue
            os.symlink(os.path.join(folder, name), link)
    for stray in target.glob("python*"):
        stray.unlink()


def render_fleet(paths: LabPaths, layout: Layout, user: str = "root") -> str:
    q = json.dumps
    lines = [
        "# Written by scripts/lab up: the lab's fleet, for fleetctl.",
        "[fleet]",
        'name = "lab"',
        "",
        "[ssh]",
        f"user = {q(user)}",
        f"identity_file = {q(str(paths.identity))}",
        f"known_hosts = {q(str(paths.known_hosts))}",
        'host_key_policy = "strict"',
        f"connect_timeout_s = {CONNECT_TIMEOUT_S}",
    ]
    if layout.bastion:
        lines.append(f"proxy_jump = {q(f'{user}@{layout.bastion.address}')}")
    lines += ["", "[router]", f"url = {q(ROUTER_URL)}"]
    lines += [
        "",
        "# The lab's reboot command: a stand-in that exists only on lab hosts (labkit/standins.py).",
        "[maintain]",
        f"reboot_command = {q(REBOOT_COMMAND)}",
    ]
    for node in layout.hosts:
        lines += ["", "[[hosts]]", f"name = {q(node.name)}", f"address = {q(node.address)}"]
        if node.host.ring:
            lines.append(f"ring = {q(node.host.ring)}")
    return "\n".join(lines) + "\n"


def render_ssh_config(paths: LabPaths, layout: Layout, user: str = "root") -> str:
    """An OpenSSH client config for `ssh -F`: every node by name or address, host keys verified.

    OpenSSH hands -F (not -o) on to the ssh it runs for a jump host, so the bastion hop is verified too."""
    lines = [
        "# Written by scripts/lab up: ssh -F <this file> <host name or address>",
        "Host *",
        f"  User {user}",
        f"  IdentityFile {paths.identity}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {paths.known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        f"  ConnectTimeout {CONNECT_TIMEOUT_S}",
    ]
    for node in layout.nodes:
        lines += ["", f"Host {node.name} {node.address}", f"  HostName {node.address}"]
        if layout.bastion and node.host is not None:
            lines.append(f"  ProxyJump {user}@{layout.bastion.address}")
    return "\n".join(lines) + "\n"


def render_known_hosts(entries: list[tuple[str, str]]) -> str:
    """(address, "ssh-ed25519 AAAA...") pairs → known_hosts text (port 22, so bare addresses)."""
    return "".join(f"{address} {key}\n" for address, key in entries)


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Atomically write text unless the file already holds it; True if it was (re)written."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def ensure_symlink(link: Path, target: Path) -> None:
    if os.path.islink(link) and os.readlink(link) == str(target):
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def write_state(paths: LabPaths, spec: dict[str, Any], phase: str) -> None:
    doc = {"schema": STATE_SCHEMA, "phase": phase, "root": str(paths.root), "spec": spec}
    write_if_changed(paths.state, json.dumps(doc, indent=2) + "\n")


def read_state(paths: LabPaths) -> dict[str, Any] | None:
    """The state `up` left, or None if there is no lab here (a foreign or torn file counts as none)."""
    try:
        doc = json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == STATE_SCHEMA else None
