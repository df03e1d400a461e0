"""A lab image that runs real vLLM (CPU) from this machine's vLLM venv, without copying the venv into it.

    image = RealImage.of(vllm_real.VENV)              # the venv, the Python it points to, the entry wrapper
    tarball, digest = build_rootfs(image)             # system libraries only (~25 MB), cached by content
    import_image(docker_cli(host.docker_host), image, tarball, digest)      # lab/vllm-real:cpu on one daemon
    image.volumes(model_dir)                          # the profile's [serve] volumes: all bind mounts, read-only

The container sees the venv and its Python at the paths they have here (the venv's links and pyvenv.cfg are
absolute) and the model at /model. Its entrypoint turns fleetctl's ``MODEL --port P ...`` into vLLM's
``--model MODEL --port P ...`` and execs the OpenAI API server, so vLLM itself is PID 1 and gets SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import images
from .commands import SYSTEM_PATH, system_tool
from .spec import LabError

REF = "lab/vllm-real:cpu"
MODEL_MOUNT = "/model"
ENTRY_DIR = "opt/fleetctl-real"
FORMAT = "1"  # bump when the tarball layout changes
LABEL_DIGEST = "fleetctl.lab.real-rootfs"
STALE_S = 3600
TOOLS = (Path("/bin/sh"), Path("/usr/bin/lscpu"))  # vLLM's CPU worker runs `lscpu --json` through a shell
_LDD_PATH = re.compile(r"(/\S+)\s+\(0x")
ENTRY = '''\
"""fleetctl runs IMAGE MODEL --port P [...]; vLLM's OpenAI API server takes --model MODEL."""
import os
import sys

args = sys.argv[1:]
if args and not args[0].startswith("-"):
    args = ["--model", args[0], *args[1:]]
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.execv(sys.executable, [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *args])
'''

Docker = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class RealImage:
    venv: Path  # as the container sees it (the entrypoint's interpreter lives there)
    python_home: Path  # the installation the venv's python links to (pyvenv.cfg ``home``/..)

    @classmethod
    def of(cls, venv: Path) -> RealImage:
        """The image for ``venv``; LabError when it is not a venv whose python lies inside its ``home``."""
        venv = Path(venv).absolute()
        home = _venv_home(venv)
        target = (
            Path(os.path.normpath(venv / "bin" / os.readlink(venv / "bin" / "python3.11")))
            if (venv / "bin" / "python3.11").is_symlink()
            else None
        )
        if target is not None and home not in target.parents:
            raise LabError(f"{venv}/bin/python3.11 links to {target}, outside its home {home}")
        return cls(venv, home)

    @property
    def entrypoint(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), "-B", f"/{ENTRY_DIR}/entry.py"]

    def volumes(self, model_dir: Path) -> dict[str, str]:
        """host path → container path:ro for the venv, its Python and the model (sources with links resolved)."""
        return {
            str(self.venv.resolve()): f"{self.venv}:ro",
            str(self.python_home.resolve()): f"{self.python_home}:ro",
            str(Path(model_dir).resolve()): f"{MODEL_MOUNT}:ro",
        }

    def mounted(self) -> tuple[Path, ...]:
        return (self.venv.resolve(), self.python_home.resolve())


def _venv_home(venv: Path) -> Path:
    try:
        text = (venv / "pyvenv.cfg").read_text()
    except OSError as e:
        raise LabError(f"{venv}: not a virtualenv ({e})") from e
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    raise LabError(f"{venv}/pyvenv.cfg has no home")


# -- rootfs ---------------------------------------------------------------------------------------------------


def build_rootfs(image: RealImage, cache_dir: Path = Path("/var/cache/fleetctl-lab")) -> tuple[Path, str]:
    """The rootfs tarball (the system libraries the venv's and its Python's ELF files need, ``TOOLS``, /tmp,
    /root, the entry wrapper) and its digest; built once per distinct content into ``cache_dir``."""
    missing = [str(t) for t in TOOLS if not t.exists()]
    if missing:
        raise LabError(f"{', '.join(missing)} needed for the real vLLM image (Debian's dash and util-linux)")
    objects = shared_objects(image.mounted()) + [t.resolve() for t in TOOLS]
    digest = _digest(image, objects)
    tarball = Path(cache_dir) / f"vllm-real-rootfs-{digest[:16]}.tar"
    if tarball.exists():
        return tarball, digest
    libraries = system_libraries(objects, image.mounted())
    tarball.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tarball.parent, suffix=".tar.tmp")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _write_rootfs(tar, libraries)
        os.replace(tmp, tarball)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _prune(tarball)
    return tarball, digest


def shared_objects(roots: tuple[Path, ...]) -> list[Path]:
    """Every ``*.so`` / ``*.so.N`` file under ``roots`` and their ``bin/python3*`` interpreters, sorted."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if (
                    (".so" in name and _is_object_name(name) or folder.endswith("/bin") and name.startswith("python3"))
                    and path.is_file()
                    and not path.is_symlink()
                ):
                    found.append(path)
    return sorted(found)


def _is_object_name(name: str) -> bool:
    return name.endswith(".so") or re.search(r"\.so(\.\d+)+$", name) is not None


def system_libraries(objects: list[Path], mounted: tuple[Path, ...]) -> list[Path]:
    """What ``ldd`` resolves for ``objects`` outside the mounted folders (libc, libstdc++, libssl...), sorted.

    Files ldd cannot read (not dynamic, another arch) and libraries it cannot find (optional accelerators'
    runtimes, loaded only when present) are skipped: vLLM on the CPU never loads them."""
    found: set[str] = set()
    for start in range(0, len(objects), 64):
        batch = [str(p) for p in objects[start : start + 64]]
        out = subprocess.run(
            [system_tool("ldd"), *batch], capture_output=True, text=True, env={"PATH": SYSTEM_PATH, "LANG": "C"}
        )
        found.update(m.group(1) for m in _LDD_PATH.finditer(out.stdout))
    outside = [Path(p) for p in found if not any(Path(p).is_relative_to(m) for m in mounted)]
    return sorted(p for p in outside if not any(p.resolve().is_relative_to(m) for m in mounted))


def _digest(image: RealImage, objects: list[Path]) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n{image.venv}\n{image.python_home}\n{ENTRY}".encode())
    h.update(Path(images.__file__).read_bytes())
    for path in objects:
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _write_rootfs(tar: tarfile.TarFile, libraries: list[Path]) -> None:
    # images' helpers add host paths with the links on their way (/lib -> usr/lib) as the host has them.
    added: set[str] = set()
    for directory, mode in (("tmp", 0o1777), ("root", 0o700), ("etc", 0o755), (ENTRY_DIR, 0o755)):
        images._add_dir(tar, directory, added, mode=mode)
    for path in [*TOOLS, *libraries]:
        images._add_host_path(tar, path, added)
    images._add_bytes(tar, f"{ENTRY_DIR}/entry.py", ENTRY.encode(), added)
    images._add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", added)
    images._add_bytes(tar, "etc/group", b"root:x:0:\n", added)


def _prune(keep: Path) -> None:
    for other in keep.parent.glob("vllm-real-rootfs-*.tar"):
        if other != keep and time.time() - other.stat().st_mtime > STALE_S:
            other.unlink(missing_ok=True)


# -- images ---------------------------------------------------------------------------------------------------


def docker_cli(docker_host: str) -> Docker:
    """The docker CLI against one daemon (``unix://...``); never raises on a non-zero exit."""

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {"PATH": SYSTEM_PATH, "LANG": "C", "HOME": os.environ.get("HOME", "/root")}
        return subprocess.run(
            [system_tool("docker"), "-H", docker_host, *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    return run


def import_image(docker: Docker, image: RealImage, tarball: Path, digest: str) -> bool:
    """Import the rootfs as ``REF`` unless the daemon already has it from this digest; True if it imported."""
    if _present_digest(docker) == digest:
        return False
    changes = [
        f"ENTRYPOINT {json.dumps(image.entrypoint)}",
        "ENV VLLM_TARGET_DEVICE=cpu",
        "EXPOSE 8000",
        f"LABEL {LABEL_DIGEST}={json.dumps(digest)}",
    ]
    run = docker("import", *(a for c in changes for a in ("--change", c)), str(tarball), REF)
    if run.returncode != 0:
        raise LabError(f"docker import {REF} failed: {run.stderr.strip() or f'exit {run.returncode}'}")
    if _present_digest(docker) != digest:
        raise LabError(f"{REF} missing or stale after import")
    return True


def _present_digest(docker: Docker) -> str | None:
    run = docker("image", "inspect", "--format", "{{json .Config.Labels}}", REF)
    if run.returncode != 0:
        return None
    try:
        return (json.loads(run.stdout) or {}).get(LABEL_DIGEST)
    except ValueError:
        return None
