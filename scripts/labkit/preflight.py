"""Can the lab run here? Root, and the tools it drives, each named with the Debian package that has it."""

from __future__ import annotations

import os
import shutil

from .commands import SYSTEM_PATH, find

HOST_PYTHON = "/usr/bin/python3"  # lab hosts run Debian's python3, whatever python the caller uses
# setpriv, unshare and mount: each host's sshd starts without CAP_SYS_BOOT, with the lab's power stand-ins bound
# over the machine's own (labkit.standins).
TOOLS = {
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "gcc": "gcc",
    "setpriv": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
}
# Debian's Docker engine, found where each lab dockerd looks (its PATH is SYSTEM_PATH), and what starts it.
DOCKER_TOOLS = {"dockerd": "docker.io", "docker": "docker.io", "containerd": "containerd", "runc": "runc"}
START_TOOLS = {"nsenter": "util-linux", "setsid": "util-linux", "umount": "mount"}
IMAGE_PYTHON = "/usr/bin/python3.11"  # the lab images' rootfs is made of it


def root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it makes network namespaces and runs sshd on lab addresses (run it with sudo)"
    return None


def tool_problems() -> list[str]:
    problems = [
        f"{tool} not found: install the Debian package {package}"
        for tool, package in TOOLS.items()
        if find(tool) is None
    ]
    if not os.access(HOST_PYTHON, os.X_OK):
        problems.append(f"{HOST_PYTHON} not found: install the Debian package python3")
    return problems


def docker_problems() -> list[str]:
    """What stops the lab's per-host dockerds (empty when they can run); a spec with `docker = false` needs none."""
    found = [
        f"{tool} not found: install the Debian package {package} (or set [lab] docker = false)"
        for tool, package in DOCKER_TOOLS.items()
        if shutil.which(tool, path=SYSTEM_PATH) is None
    ]
    found += [
        f"{tool} not found: install the Debian package {package}"
        for tool, package in START_TOOLS.items()
        if find(tool) is None
    ]
    if not os.access(IMAGE_PYTHON, os.X_OK):
        found.append(f"{IMAGE_PYTHON} not found: the lab images need Debian's python3.11 (or set [lab] docker = false)")
    return found


def problems() -> list[str]:
    """Everything that stops the lab from running here (empty when it can)."""
    root = root_problem()
    return ([root] if root else []) + tool_problems()
