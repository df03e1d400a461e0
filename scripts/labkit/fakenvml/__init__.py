"""The lab's fake GPU: a C libnvidia-ml.so.1 for the real pynvml, its config file, and fake NVIDIA host tools.

    lib = build_library(lab_dir / "lib")                       # → lab_dir/lib/libnvidia-ml.so.1
    (host_dir / "nvml.conf").write_text(render_config(host))   # point FAKE_NVML_CONFIG at it
    install_tools(host_dir / "bin", host)                      # nvidia-ctk, nv-fabricmanager, nvidia-smi, hook

Processes that load the library need LD_LIBRARY_PATH=<lib dir> and FAKE_NVML_CONFIG=<file> from the start.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

from .config import gpu_uuid, host_values, pci_bus_id, render_config
from .tools import install_tools

__all__ = [
    "build_library",
    "render_config",
    "install_tools",
    "host_values",
    "gpu_uuid",
    "pci_bus_id",
    "SOURCE",
    "LIBRARY_NAME",
    "CFLAGS",
]

SOURCE = pathlib.Path(__file__).with_name("fake_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"
CFLAGS = [
    "-shared",
    "-fPIC",
    "-O2",
    "-Wall",
    "-Werror",
    "-fvisibility=hidden",
    "-pthread",
    f"-Wl,-soname,{LIBRARY_NAME}",
]


def build_library(out_dir: pathlib.Path) -> pathlib.Path:
    """Compile fake_nvml.c into out_dir/libnvidia-ml.so.1 unless it is already newer than the source."""
    out_dir = pathlib.Path(out_dir)
    target = out_dir / LIBRARY_NAME
    if target.exists() and target.stat().st_mtime > SOURCE.stat().st_mtime:
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: install the Debian package gcc")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: processes that have the old library mapped keep their copy.
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{LIBRARY_NAME}.")
    os.close(fd)
    try:
        run = subprocess.run([gcc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"gcc failed to build {LIBRARY_NAME} (exit {run.returncode}):\n{run.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)
    return target
