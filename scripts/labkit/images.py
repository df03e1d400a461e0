"""Lab images without a registry: a rootfs tarball (this machine's python3.11 + the vLLM stand-in), docker-imported.

    tarball = build_rootfs(cache_dir)           # cached by content hash
    import_images("unix:///lab/h1/docker.sock", tarball,
                  {"lab/vllm:stable": {"behaviour": "healthy", "version": "0.32.0"}})

An image runs as ``docker run IMAGE MODEL --port 8000 [vLLM flags]``, like vllm/vllm-openai; its behaviour and
version come from the environment the tag sets (FLEETCTL_STANDIN_BEHAVIOUR, FLEETCTL_STANDIN_VERSION).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .standin.engine import BEHAVIOURS

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
STANDIN_SRC = Path(__file__).resolve().parent / "standin"
STANDIN_DIR = "/opt/fleetctl-standin"
ENTRYPOINT = [str(PYTHON), "-I", "-S", "-B", f"{STANDIN_DIR}/server.py"]
FORMAT = "1"  # bump when the tarball layout changes
SKIPPED_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "ensurepip",
        "__pycache__",
        "turtledemo",
        "lib2to3",
        "config-3.11-x86_64-linux-gnu",
    }
)
LABEL_ROOTFS = "fleetctl.lab.rootfs"
LABEL_BEHAVIOUR = "fleetctl.lab.behaviour"
LABEL_VERSION = "fleetctl.lab.version"
LABEL_CHANGES = "fleetctl.lab.changes"
_LDD_PATH = re.compile(r"(/\S+)\s+\(0x")


class ImageError(RuntimeError):
    """The rootfs could not be built or a daemon refused an import."""


def build_rootfs(cache_dir: Path) -> Path:
    """The rootfs tarball for the lab images, built once per distinct content into ``cache_dir``."""
    files = _rootfs_files()
    digest = _content_hash(files)
    cache_dir = Path(cache_dir)
    tarball = cache_dir / f"standin-rootfs-{digest[:16]}.tar"
    if tarball.exists():
        return tarball
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tar.tmp")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _write_rootfs(tar, files, digest)
        os.replace(tmp, tarball)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tarball


def rootfs_digest(tarball: Path) -> str:
    """The content hash a tarball from ``build_rootfs`` was named after (read from its marker file)."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(f"{STANDIN_DIR.lstrip('/')}/ROOTFS")
        if member is None:
            raise ImageError(f"{tarball}: not a stand-in rootfs")
        return member.read().decode().strip()


def import_images(docker_host: str, tarball: Path, tags: dict[str, dict]) -> None:
    """Import ``tarball`` into the daemon at ``docker_host`` once per tag, with that tag's behaviour and version.

    ``tags`` maps ``NAME:TAG`` to ``{"behaviour": ..., "version": ...}`` (defaults: healthy, 0.32.0). A tag that
    already holds the same rootfs, behaviour and version is left as it is.
    """
    import docker

    digest = rootfs_digest(Path(tarball))
    unknown = {spec.get("behaviour") for spec in tags.values()} - {None, *BEHAVIOURS}
    if unknown:
        raise ImageError(f"unknown stand-in behaviour(s) {sorted(unknown)}; known: {', '.join(BEHAVIOURS)}")
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=300)
    except docker.errors.DockerException as e:
        raise ImageError(f"{docker_host}: no Docker daemon answers: {e}") from e
    try:
        for name, spec in tags.items():
            behaviour, version = spec.get("behaviour", "healthy"), spec.get("version", "0.32.0")
            changes = image_changes(behaviour, version)
            labels = {
                LABEL_ROOTFS: digest,
                LABEL_BEHAVIOUR: behaviour,
                LABEL_VERSION: version,
                LABEL_CHANGES: hashlib.sha256("\n".join(changes).encode()).hexdigest()[:16],
            }
            if _has_image(client, name, labels):
                continue
            repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
            label_change = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
            try:
                client.api.import_image_from_file(
                    str(tarball), repository=repository, tag=tag, changes=[*changes, label_change]
                )
            except docker.errors.APIError as e:
                raise ImageError(f"{docker_host}: import of {name} failed: {e.explanation or e}") from e
            if not _has_image(client, name, labels):
                raise ImageError(f"{docker_host}: {name} missing after import")
    finally:
        client.close()


def image_changes(behaviour: str, version: str) -> list[str]:
    """Dockerfile instructions for ``docker import --change`` (labels are added beside them)."""
    return [
        f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
        f"ENV FLEETCTL_STANDIN_BEHAVIOUR={behaviour}",
        f"ENV FLEETCTL_STANDIN_VERSION={version}",
        "EXPOSE 8000",
    ]


def _has_image(client, name: str, labels: dict[str, str]) -> bool:
    import docker

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    have = (image.attrs.get("Config") or {}).get("Labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _rootfs_files() -> list[Path]:
    """Host paths the image needs: python3.11, its libraries, the stdlib (trimmed)."""
    if not PYTHON.exists() or not STDLIB.is_dir():
        raise ImageError(f"{PYTHON} and {STDLIB} are needed (Debian's python3.11 package)")
    stdlib = [p for p in sorted(STDLIB.rglob("*")) if _kept(p) and (p.is_file() or p.is_symlink())]
    dynload = [p for p in stdlib if p.parent.name == "lib-dynload" and p.suffix == ".so"]
    return [PYTHON, *shared_libraries([PYTHON, *dynload]), *stdlib]


def _kept(path: Path) -> bool:
    return not SKIPPED_DIRS.intersection(path.relative_to(STDLIB).parts[:-1])


def shared_libraries(binaries: list[Path]) -> list[Path]:
    """Every library ``ldd`` lists for ``binaries`` (the dynamic loader included), sorted, without repeats."""
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
        if out.returncode != 0:
            raise ImageError(f"ldd {binary} failed: {out.stderr.strip()}")
        found.update(m.group(1) for m in _LDD_PATH.finditer(out.stdout))
    return [Path(p) for p in sorted(found)]


def _standin_sources() -> list[Path]:
    return sorted(STANDIN_SRC.glob("*.py"))


def _content_hash(files: list[Path]) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    for path in [*files, *_standin_sources()]:
        h.update(str(path).encode() + b"\0")
        if path.is_symlink():
            h.update(b"link:" + os.readlink(path).encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


def _write_rootfs(tar: tarfile.TarFile, files: list[Path], digest: str) -> None:
    added: set[str] = set()
    for directory in ("tmp", "etc", STANDIN_DIR.lstrip("/")):
        _add_dir(tar, directory, added, mode=0o1777 if directory == "tmp" else 0o755)
    for path in files:
        _add_host_path(tar, path, added)
    for source in _standin_sources():
        _add_file(tar, source, f"{STANDIN_DIR.lstrip('/')}/{source.name}", added, mode=0o644)
    _add_bytes(tar, f"{STANDIN_DIR.lstrip('/')}/ROOTFS", f"{digest}\n".encode(), added)
    _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n", added)
    _add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", added)


def _add_host_path(tar: tarfile.TarFile, path: Path, added: set[str]) -> None:
    """Add ``path`` as the host has it: a symlink on the way (/lib -> usr/lib) becomes a link entry, and the walk
    goes on at its target, one link at a time, so chains of links arrive whole."""
    current = Path("/")
    parts = path.parts[1:]
    for i, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            target = os.readlink(current)
            _add_link(tar, current, target, added)
            real = Path(os.path.normpath(current.parent / target))
            _add_host_path(tar, real.joinpath(*parts[i + 1 :]), added)
            return
    _add_file(tar, path, str(path).lstrip("/"), added, mode=path.stat().st_mode & 0o7777)


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
    return info


def _add_dir(tar: tarfile.TarFile, name: str, added: set[str], mode: int = 0o755) -> None:
    parts = Path(name).parts
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix not in added:
            added.add(prefix)
            tar.addfile(_info(prefix, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))


def _add_link(tar: tarfile.TarFile, path: Path, target: str, added: set[str]) -> None:
    name = str(path).lstrip("/")
    if name in added:
        return
    if path.parent != Path("/"):
        _add_dir(tar, str(path.parent).lstrip("/"), added)
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    added.add(name)
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, source: Path, name: str, added: set[str], mode: int) -> None:
    if name in added:
        return
    _add_dir(tar, str(Path(name).parent), added)
    data = source.read_bytes()
    info = _info(name, tarfile.REGTYPE, mode)
    info.size = len(data)
    added.add(name)
    tar.addfile(info, io.BytesIO(data))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, added: set[str]) -> None:
    info = _info(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    added.add(name)
    tar.addfile(info, io.BytesIO(data))
