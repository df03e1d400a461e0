"""Fake NVIDIA host tools for a lab host's bin folder: nvidia-ctk, nv-fabricmanager, the runtime hook, nvidia-smi."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
from typing import Any

from .config import host_values

NVIDIA_SMI = pathlib.Path(__file__).with_name("nvidia-smi.sh")

CTK = """#!/bin/sh
# Fake nvidia-ctk (fleetctl lab): NVIDIA Container Toolkit {version}. Only --version is answered.
case "$1" in
--version | -v) printf '%s\\n' 'NVIDIA Container Toolkit CLI version {version}' 'commit: {commit}'; exit 0 ;;
esac
echo "nvidia-ctk: the fleetctl lab fake only answers --version" >&2
exit 1
"""

FABRIC_MANAGER = """#!/bin/sh
# Fake nv-fabricmanager (fleetctl lab): Fabric Manager {version}. Only --version is answered.
case "$1" in
--version | -v) echo 'Fabric Manager version is : {version}'; exit 0 ;;
esac
echo "nv-fabricmanager: the fleetctl lab fake only answers --version" >&2
exit 1
"""

# dockerd registers its "nvidia" device driver (docker run --gpus) when this is on its PATH; runc then runs it
# as a prestart hook with the container state on stdin.
RUNTIME_HOOK = """#!/bin/sh
# Fake nvidia-container-runtime-hook (fleetctl lab): NVIDIA Container Toolkit {version}.
case "$1" in
--version | -version) printf '%s\\n' 'NVIDIA Container Runtime Hook version {version}' 'commit: {commit}'; exit 0 ;;
esac
cat >/dev/null
exit 0
"""


def fake_commit(version: str) -> str:
    """A stable 40-hex stand-in for the git commit a real build prints."""
    return hashlib.sha1(f"nvidia-container-toolkit {version}".encode()).hexdigest()


def tool_scripts(host: dict[str, Any]) -> dict[str, str | None]:
    """Tool name → script text, or None where the host does not have that tool."""
    values = host_values(host)
    ctk = values["nvidia_container_toolkit"]
    fm = values["fabric_manager"]
    has_driver = values["nvml"] != "library-missing"
    return {
        "nvidia-ctk": CTK.format(version=ctk, commit=fake_commit(ctk)) if ctk else None,
        "nvidia-container-runtime-hook": RUNTIME_HOOK.format(version=ctk, commit=fake_commit(ctk)) if ctk else None,
        "nv-fabricmanager": FABRIC_MANAGER.format(version=fm) if fm else None,
        "nvidia-smi": NVIDIA_SMI.read_text() if has_driver else None,
    }


def write_executable(path: pathlib.Path, text: str) -> None:
    """Write atomically (a running copy keeps its inode) with mode 0755."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def install_tools(bin_dir: pathlib.Path, host: dict[str, Any]) -> None:
    """Write the host's fake NVIDIA tools into bin_dir and remove the ones it should not have."""
    bin_dir = pathlib.Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in tool_scripts(host).items():
        path = bin_dir / name
        if text is None:
            path.unlink(missing_ok=True)
        elif not path.exists() or path.read_text() != text or not os.access(path, os.X_OK):
            write_executable(path, text)
