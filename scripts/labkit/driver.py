"""`lab-driver`: a lab host's stand-in for the package manager that installs an NVIDIA driver or Fabric Manager.

    lab-driver install 575.57.08                 # on a lab host, over SSH
    lab-driver install-fabric-manager 575.57.08

What a host has installed lives on its disk (<host dir>/installed.json), so `scripts/lab up` keeps it:

    {"driver": "570.133.20", "pending_driver": "575.57.08", "fabric_manager": "575.57.08"}

A driver takes effect at the next boot (labkit.power moves pending_driver to driver); until then NVML fails
as on a real host after a driver package upgrade without a reboot: nvmlInit returns
NVML_ERROR_LIB_RM_VERSION_MISMATCH (nvidia-smi: "Driver/library version mismatch"). A Fabric Manager package
replaces its binary at once (`nv-fabricmanager --version` shows the new version); its service would start with
the new driver at the next boot. A version the lab does not know fails as apt does (exit 100, "E: ...").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .fakenvml import host_values, render_config
from .fakenvml.config import cuda_version_int
from .fakenvml.tools import FABRIC_MANAGER, write_executable
from .files import write_if_changed

# Driver → the CUDA version it reports (nvmlSystemGetCudaDriverVersion): the newest CUDA release whose minimum
# driver it meets, as in profiles/matrix/cuda_driver.toml (tests/labkit/test_lab_driver.py checks each row).
DRIVER_CUDA = {
    "535.247.01": "12.2",
    "550.163.01": "12.4",
    "560.35.05": "12.6",
    "570.133.20": "12.8",
    "570.172.08": "12.8",
    "575.57.08": "12.9",
    "580.65.06": "13.0",
    "580.95.05": "13.0",
    "590.44.01": "13.1",
}
APT_ERROR = 100  # apt-get's exit status for errors
USAGE = "usage: lab-driver install VERSION | lab-driver install-fabric-manager VERSION"
PACKAGES = {"install": "nvidia-driver", "install-fabric-manager": "nvidia-fabricmanager"}


def installed_path(host_dir: Path) -> Path:
    return Path(host_dir) / "installed.json"


def read_installed(host_dir: Path) -> dict[str, str]:
    """What was installed on this host (empty: what its spec says); a torn or foreign file counts as nothing."""
    try:
        doc = json.loads(installed_path(host_dir).read_text())
    except (OSError, ValueError):
        return {}
    keys = ("driver", "pending_driver", "fabric_manager")
    return (
        {k: v for k, v in doc.items() if k in keys and isinstance(v, str) and v in DRIVER_CUDA}
        if isinstance(doc, dict)
        else {}
    )


def write_installed(host_dir: Path, installed: dict[str, str]) -> None:
    write_if_changed(installed_path(host_dir), json.dumps(installed, indent=2, sort_keys=True) + "\n")


def effective_table(raw: dict[str, Any], installed: dict[str, str]) -> dict[str, Any]:
    """The host's spec table as its disk now has it: the driver it booted with (and that driver's CUDA
    version), its Fabric Manager, and a version mismatch while an installed driver waits for a reboot."""
    table = host_values(raw)  # the spec's defaults filled in
    if "driver" in installed:
        table["driver"] = installed["driver"]
        table["cuda"] = DRIVER_CUDA[installed["driver"]]
    if "fabric_manager" in installed:
        table["fabric_manager"] = installed["fabric_manager"]
    if _pending(installed, table) and table["nvml"] == "ok":
        table["nvml"] = "version-mismatch"
    return table


def render_nvml_config(raw: dict[str, Any], installed: dict[str, str]) -> str:
    """nvml.conf for the host: while a driver is pending, the library that answers is the new one."""
    table = effective_table(raw, installed)
    text = render_config(table)
    pending = _pending(installed, table)
    if pending:  # later lines win (fake_nvml.c and nvidia-smi.sh)
        text += f"nvml_version={DRIVER_CUDA[pending].split('.')[0]}.{pending}\n"
        text += f"# pending until reboot: cuda_driver_version={cuda_version_int(DRIVER_CUDA[pending])}\n"
    return text


def boot(installed: dict[str, str]) -> dict[str, str]:
    """What the host has after a boot: a pending driver is the running one."""
    after = {k: v for k, v in installed.items() if k != "pending_driver"}
    if "pending_driver" in installed:
        after["driver"] = installed["pending_driver"]
    return after


def _pending(installed: dict[str, str], table: dict[str, Any]) -> str | None:
    pending = installed.get("pending_driver")
    return pending if pending and pending != table["driver"] else None


# -- the command on the host ------------------------------------------------------------------------------------


def main(argv: list[str], host_dir: Path, raw: dict[str, Any]) -> int:
    """`lab-driver ARGS` on the host whose folder is host_dir and whose spec table is raw."""
    if len(argv) != 2 or argv[0] not in PACKAGES:
        print(USAGE, file=sys.stderr)
        return 2
    action, version = argv
    package = PACKAGES[action]
    if version not in DRIVER_CUDA:
        print(f"E: Version '{version}' for '{package}' was not found", file=sys.stderr)
        return APT_ERROR
    installed = read_installed(host_dir)
    if action == "install":
        return _install_driver(Path(host_dir), raw, installed, version)
    installed["fabric_manager"] = version
    write_installed(host_dir, installed)
    write_executable(Path(host_dir) / "bin" / "nv-fabricmanager", FABRIC_MANAGER.format(version=version))
    print(f"Setting up {package} ({version}) ...")
    return 0


def _install_driver(host_dir: Path, raw: dict[str, Any], installed: dict[str, str], version: str) -> int:
    running = effective_table(raw, {k: v for k, v in installed.items() if k != "pending_driver"})["driver"]
    if installed.get("pending_driver", running) == version:
        print(f"nvidia-driver is already the newest version ({version}).")
        return 0
    installed["pending_driver"] = version
    write_installed(host_dir, installed)
    write_if_changed(host_dir / "nvml.conf", render_nvml_config(raw, installed))
    print(f"Setting up nvidia-driver ({version}) ...")
    if version != running:
        print("*** A reboot is needed to load the new NVIDIA kernel module (running: " + running + ") ***")
    return 0
