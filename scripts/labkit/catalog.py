"""The lab's vLLM images (tags that stand for releases and behaviours) and the ready-to-use profiles for them.

    tarball, digest = rootfs()                       # built once into IMAGE_CACHE, kept across `down`
    ensure_images(docker, tarball, digest, bundle_path(IMAGE_CACHE, digest))   # docker: the CLI on one daemon
    write_profiles(lab_dir / "profiles")             # stable.toml, next.toml, failing.toml, ...

Everything goes through the docker CLI (`docker import --change ...`, `docker save`, `docker load`), so the lab
stays stdlib-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import images
from .files import write_if_changed
from .spec import LabError

IMAGE_CACHE = Path("/var/cache/fleetctl-lab")
REPOSITORY = "lab/vllm"
MODEL = "lab/tiny-llama"
OTHER_MODEL = "lab/other-model"  # the second pool's model (the stand-in serves any model it is given)
OTHER_NAME = "other"  # ... under the name clients use (--served-model-name)
OTHER_TAGS = ("stable", "next")  # other-stable.toml, other-next.toml
PORT = 8000
CUDA = "12.8"  # what the images claim to be built with (a profile must say)
STALE_TARBALL_S = 3600  # other tarballs and bundles in the cache older than this are removed
ROOTFS_INDEX = "standin-rootfs.json"

Docker = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class LabImage:
    tag: str
    behaviour: str  # the stand-in's --behaviour
    version: str  # the vLLM version it claims (/version)
    description: str
    health_timeout_s: int = 60  # the profile's [serve] health_timeout_s

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}:{self.tag}"

    def changes(self) -> list[str]:
        """The image's `docker import --change` lines (from labkit.images)."""
        return images.image_changes(self.behaviour, self.version)

    def labels(self, digest: str) -> dict[str, str]:
        """What tells an up-to-date image: its rootfs, behaviour, version and changes (as labkit.images labels)."""
        changes = hashlib.sha256("\n".join(self.changes()).encode()).hexdigest()[:16]
        return {
            images.LABEL_ROOTFS: digest,
            images.LABEL_BEHAVIOUR: self.behaviour,
            images.LABEL_VERSION: self.version,
            images.LABEL_CHANGES: changes,
        }


IMAGES = (
    LabImage("stable", "healthy", "0.32.0", "healthy vLLM 0.32.0 stand-in"),
    LabImage("next", "healthy", "0.32.1", "healthy vLLM 0.32.1 stand-in (the upgrade target)"),
    LabImage(
        "failing",
        "failing",
        "0.32.1",
        "vLLM 0.32.1 stand-in: a share of requests answer 500 or finish with reason error",
    ),
    LabImage("slow", "slow", "0.32.1", "vLLM 0.32.1 stand-in: time to first token several times higher"),
    LabImage("crash", "crash", "0.32.1", "vLLM 0.32.1 stand-in that crashes at start", health_timeout_s=30),
    LabImage(
        "never-ready", "never-ready", "0.32.1", "vLLM 0.32.1 stand-in that never becomes healthy", health_timeout_s=15
    ),
)


def image(tag: str) -> LabImage:
    return next(i for i in IMAGES if i.tag == tag)


# -- images --------------------------------------------------------------------------------------------------


def rootfs(cache_dir: Path = IMAGE_CACHE) -> tuple[Path, str]:
    """The stand-in rootfs tarball (built once per content) and its digest; older tarballs are pruned.

    build_rootfs hashes its inputs on every call (seconds: one ldd per library); an index of the inputs' sizes
    and mtimes answers repeated calls in milliseconds while none of them changed."""
    known = _indexed_rootfs(cache_dir)
    if known is not None:
        return known
    try:
        tarball = images.build_rootfs(cache_dir)
        digest = images.rootfs_digest(tarball)
        _write_index(cache_dir, tarball, digest)
    except (images.ImageError, OSError, tarfile.TarError) as e:
        raise LabError(f"lab image rootfs: {e}") from e
    _prune(cache_dir, keep={tarball, bundle_path(cache_dir, digest)})
    return tarball, digest


def _prune(cache_dir: Path, keep: set[Path]) -> None:
    """Remove tarballs and bundles of other contents, once no lab is likely to still be using them."""
    for other in [*cache_dir.glob("standin-rootfs-*.tar"), *cache_dir.glob("lab-images-*.tar")]:
        if other not in keep and time.time() - other.stat().st_mtime > STALE_TARBALL_S:
            other.unlink(missing_ok=True)


def _indexed_rootfs(cache_dir: Path) -> tuple[Path, str] | None:
    try:
        index = json.loads((cache_dir / ROOTFS_INDEX).read_text())
        tarball = cache_dir / index["tarball"]
        if tarball.is_file() and index["inputs"] == _inputs_fingerprint(index["paths"]):
            return tarball, index["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_index(cache_dir: Path, tarball: Path, digest: str) -> None:
    with tarfile.open(tarball) as tar:
        paths = [f"/{m.name}" for m in tar.getmembers() if not m.isdir() and not m.name.startswith(("opt/", "etc/"))]
    index = {"tarball": tarball.name, "digest": digest, "paths": paths, "inputs": _inputs_fingerprint(paths)}
    write_if_changed(cache_dir / ROOTFS_INDEX, json.dumps(index) + "\n")


def _inputs_fingerprint(paths: list[str]) -> str:
    """Size, mtime and inode of everything build_rootfs reads: the files in the tarball, the stdlib's folders
    (a file added or removed changes them), the stand-in sources and labkit/images.py itself."""
    h = hashlib.sha256(f"format {images.FORMAT}\n".encode())
    folders = [root for root, _, _ in os.walk(images.STDLIB)]
    for path in [
        images.__file__,
        str(images.STANDIN_SRC),
        *map(str, images.STANDIN_SRC.glob("*.py")),
        *folders,
        *paths,
    ]:
        st = os.lstat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()


def bundle_path(cache_dir: Path, digest: str) -> Path:
    """Where `docker save` keeps every lab tag made from this rootfs: one layer, six image configs."""
    key = hashlib.sha256(json.dumps([(i.ref, i.labels(digest)) for i in IMAGES]).encode()).hexdigest()
    return cache_dir / f"lab-images-{key[:16]}.tar"


def ensure_images(docker: Docker, tarball: Path, digest: str, bundle: Path) -> str:
    """Give one daemon every lab tag, made from this rootfs; "present", "loaded" or "imported".

    The first daemon imports the tarball once per tag (`docker import --change ...`) and saves them all into
    `bundle`; the next ones `docker load` it: one layer to unpack instead of six, and the same image IDs on
    every host, as after a pull from a registry."""
    before = present_images(docker, [i.ref for i in IMAGES])
    stale = [i for i in IMAGES if not _up_to_date(before, i, digest)]
    if not stale:
        return "present"
    if bundle.is_file():
        _run(docker, "load", "--quiet", "--input", str(bundle))
        how = "loaded"
    else:
        for wanted in stale:
            _import(docker, tarball, wanted, digest)
        _save(docker, bundle)
        how = "imported"
    after = present_images(docker, [i.ref for i in IMAGES])
    missing = [i.ref for i in IMAGES if not _up_to_date(after, i, digest)]
    if missing:
        raise LabError(f"docker {how} but {', '.join(missing)} still missing or stale ({bundle})")
    for ref, (old_id, _) in before.items():
        if old_id != after[ref][0]:
            docker("image", "rm", old_id)  # the replaced image; fails harmlessly if a container uses it
    return how


def _up_to_date(present: dict, wanted: LabImage, digest: str) -> bool:
    labels = present.get(wanted.ref, (None, {}))[1]
    return all(labels.get(k) == v for k, v in wanted.labels(digest).items())


def _import(docker: Docker, tarball: Path, wanted: LabImage, digest: str) -> None:
    label = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in wanted.labels(digest).items())
    changes = [*wanted.changes(), label]
    _run(docker, "import", *(arg for c in changes for arg in ("--change", c)), str(tarball), wanted.ref)


def _save(docker: Docker, bundle: Path) -> None:
    tmp = bundle.with_name(f".{bundle.name}.{os.getpid()}.tmp")
    try:
        _run(docker, "save", "--output", str(tmp), *(i.ref for i in IMAGES))
        os.replace(tmp, bundle)
    finally:
        tmp.unlink(missing_ok=True)


def _run(docker: Docker, *args: str) -> None:
    run = docker(*args)
    if run.returncode != 0:
        raise LabError(f"docker {' '.join(args[:1])} failed: {run.stderr.strip() or f'exit {run.returncode}'}")


def present_images(docker: Docker, refs: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """ref → (image id, labels) for those of refs the daemon has (one `docker image inspect`)."""
    run = docker("image", "inspect", "--format", "{{json .RepoTags}}\t{{json .Id}}\t{{json .Config.Labels}}", *refs)
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for line in run.stdout.splitlines():
        try:
            tags, image_id, labels = (json.loads(part) for part in line.split("\t"))
        except ValueError:
            continue
        for tag in tags or ():
            found[tag] = (image_id, labels or {})
    return {ref: found[ref] for ref in refs if ref in found}


# -- profiles ------------------------------------------------------------------------------------------------


def render_profile(wanted: LabImage, *, other: bool = False) -> str:
    """A fleetctl profile (profiles/*.toml schema) that serves this lab image with every GPU of the host; with
    ``other``, the second model (``other-<tag>``), served as ``--served-model-name other``."""
    q = json.dumps
    name = f"other-{wanted.tag}" if other else wanted.tag
    args = ["--max-model-len", "4096", *(("--served-model-name", OTHER_NAME) if other else ())]
    lines = [
        f"# Written by scripts/lab up: {wanted.ref}, a {wanted.description}"
        + (f", serving {OTHER_MODEL} as {OTHER_NAME}." if other else "."),
        "# Exists only on the lab's own Docker daemons (scripts/lab up imports it on every host).",
        "",
        "[profile]",
        f"name = {q(name)}",
        f"description = {q('Lab: ' + wanted.description)}",
        "",
        "[image]",
        f"ref = {q(wanted.ref)}",
        f"cuda = {q(CUDA)}",
        f"vllm = {q(wanted.version)}",
        "",
        "[requires]",
        'gpus = ">=1"',
        "",
        "[serve]",
        f"model = {q(OTHER_MODEL if other else MODEL)}",
        f"port = {PORT}",
        f"args = [{', '.join(q(a) for a in args)}]",
        'gpus = "all"',
        f"health_timeout_s = {wanted.health_timeout_s}",
    ]
    return "\n".join(lines) + "\n"


def write_profiles(folder: Path) -> list[Path]:
    """`<tag>.toml` for every lab image and `other-<tag>.toml` for the second model's (OTHER_TAGS), rewritten
    only when it changed; stray .toml files are left alone."""
    paths = [folder / f"{i.tag}.toml" for i in IMAGES]
    for wanted, path in zip(IMAGES, paths):
        write_if_changed(path, render_profile(wanted))
    for wanted in (i for i in IMAGES if i.tag in OTHER_TAGS):
        paths.append(folder / f"other-{wanted.tag}.toml")
        write_if_changed(paths[-1], render_profile(wanted, other=True))
    return paths
