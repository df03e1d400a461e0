"""Lab images without a registry: build the rootfs, import it into a throwaway dockerd, run the stand-in in it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from labkit import images

from tests.support.env import free_port, require

pytestmark = pytest.mark.lab
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
TAGS = {
    "lab/vllm:stable": {"behaviour": "healthy", "version": "0.32.0"},
    "lab/vllm:next": {"behaviour": "healthy", "version": "0.32.1"},
    "lab/vllm:crash": {"behaviour": "crash", "version": "0.32.0"},
}


@pytest.fixture(scope="module")
def dockerd():
    """One dockerd of our own: socket, data root, exec root and pid file under a short temp dir."""
    require(os.geteuid() == 0 and os.path.exists(DOCKERD), "needs root and dockerd (apt-get install docker.io)")
    require(Path("/usr/bin/python3.11").exists(), "needs Debian's /usr/bin/python3.11 for the image rootfs")
    root = Path(tempfile.mkdtemp(prefix="fl-dk-", dir="/tmp"))
    host = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        [
            DOCKERD,
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "-H",
            host,
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "docker.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = None
    try:
        client = _wait_ping(host, proc, root)
        yield host, client
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """dockerd can leave mounts behind (exec-root/netns/default); unmount them, deepest first."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _wait_ping(host: str, proc: subprocess.Popen, root: Path):
    import docker

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dockerd exited {proc.returncode}: {(root / 'dockerd.log').read_text()[-2000:]}")
        try:
            client = docker.DockerClient(base_url=host, timeout=120)
            if client.ping():
                return client
        except docker.errors.DockerException:  # not listening yet
            time.sleep(0.5)
    pytest.fail("dockerd not ready after 60 s")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return images.build_rootfs(tmp_path_factory.mktemp("image-cache"))


def test_rootfs_is_cached_by_content_and_holds_python_and_the_standin(tarball, tmp_path):
    assert images.build_rootfs(tarball.parent) == tarball
    digest = images.rootfs_digest(tarball)
    assert tarball.name == f"standin-rootfs-{digest[:16]}.tar"
    import tarfile

    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {
        "usr/bin/python3.11",
        "lib",
        "lib64",
        "opt/fleetctl-standin/server.py",
        "usr/lib/python3.11/http/server.py",
    } <= names
    assert not any(
        n.startswith(("usr/lib/python3.11/test/", "usr/lib/python3.11/tkinter/")) or "__pycache__" in n for n in names
    )
    assert tarball.stat().st_size < 80 * 1024 * 1024


def _wait_health(url: str, container, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        assert container.status in ("created", "running"), container.logs().decode()[-2000:]
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no /health 200 from {url}: {container.logs().decode()[-2000:]}")


def test_imported_images_run_the_standin_with_host_networking(dockerd, tarball):
    host, client = dockerd
    images.import_images(host, tarball, TAGS)
    stable = client.images.get("lab/vllm:stable")
    assert stable.attrs["Config"]["Labels"][images.LABEL_BEHAVIOUR] == "healthy"
    images.import_images(host, tarball, TAGS)  # idempotent: same image, not a new one
    assert client.images.get("lab/vllm:stable").id == stable.id

    for tag, version in (("lab/vllm:stable", "0.32.0"), ("lab/vllm:next", "0.32.1")):
        port = free_port()
        container = client.containers.run(
            tag,
            ["lab-model", "--port", str(port), "--host", "127.0.0.1", "--shutdown-timeout", "0"],
            detach=True,
            network_mode="host",
            name=f"standin-{port}",
        )
        url = f"http://127.0.0.1:{port}"
        _wait_health(url, container)
        assert requests.get(f"{url}/version", timeout=5).json() == {"version": version}
        assert requests.get(f"{url}/v1/models", timeout=5).json()["data"][0]["id"] == "lab-model"
        start = time.monotonic()
        container.stop(timeout=10)  # SIGTERM, as fleetctl stops it
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0 and time.monotonic() - start < 8


def test_crash_image_exits_non_zero(dockerd, tarball):
    host, client = dockerd
    images.import_images(host, tarball, {"lab/vllm:crash": TAGS["lab/vllm:crash"]})
    container = client.containers.run(
        "lab/vllm:crash", ["lab-model", "--port", str(free_port())], detach=True, network_mode="host"
    )
    assert container.wait(timeout=30)["StatusCode"] != 0
    assert b"Engine core initialization failed" in container.logs()


def test_import_refuses_unknown_behaviours_and_missing_daemons(tarball, tmp_path):
    with pytest.raises(images.ImageError, match="unknown stand-in behaviour"):
        images.import_images(f"unix://{tmp_path}/none.sock", tarball, {"lab/vllm:odd": {"behaviour": "odd"}})
    with pytest.raises(images.ImageError, match="no Docker daemon answers"):
        images.import_images(f"unix://{tmp_path}/none.sock", tarball, {"lab/vllm:slow": {"behaviour": "slow"}})
