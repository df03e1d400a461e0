"""The system tools the lab runs, found on root's usual PATH even when the caller's PATH is short."""

from __future__ import annotations

import shutil

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's own tools only (its docker.io, containerd, runc)


def find(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def tool(name: str) -> str:
    """Absolute path of a tool (its bare name if missing: running it then fails with a clear error)."""
    return find(name) or name


def system_tool(name: str) -> str:
    """Debian's own copy of a tool (e.g. docker.io's CLI, not a newer one in /usr/local), else `tool(name)`."""
    return shutil.which(name, path=SYSTEM_PATH) or tool(name)
