"""Can the lab run here? Root, and the tools it drives, each named with the Debian package that has it."""

from __future__ import annotations

import os

from .commands import find

HOST_PYTHON = "/usr/bin/python3"     # lab hosts run Debian's python3, whatever python the caller uses
TOOLS = {"sshd": "openssh-server", "ssh-keygen": "openssh-client", "ip": "iproute2", "gcc": "gcc"}


def root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it makes network namespaces and runs sshd on lab addresses (run it with sudo)"
    return None


def tool_problems() -> list[str]:
    problems = [f"{tool} not found: install the Debian package {package}"
                for tool, package in TOOLS.items() if find(tool) is None]
    if not os.access(HOST_PYTHON, os.X_OK):
        problems.append(f"{HOST_PYTHON} not found: install the Debian package python3")
    return problems


def problems() -> list[str]:
    """Everything that stops the lab from running here (empty when it can)."""
    root = root_problem()
    return ([root] if root else []) + tool_problems()
