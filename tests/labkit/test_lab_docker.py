"""The lab's second floor: one real dockerd per lab host, the lab images, GPU requests and the lab profiles."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from labkit import catalog, dockerd, images, netns
from labkit.commands import SYSTEM_PATH
from labkit.files import LabPaths, session_env
from labkit.layout import plan_layout
from labkit.preflight import docker_problems
from labkit.spec import LabError, SpecError, load_spec, parse_spec

from fleetctl.core.compat.profile import parse_profile
from fleetctl.services.profiles import load_matrix

LAB = ROOT / "scripts" / "lab"
SPEC = {
    "hosts": [
        {"name": "dk-gpu", "ring": "canary", "gpu_count": 2, "nvidia_container_toolkit": "1.17.8"},
        {"name": "dk-plain", "ring": "main"},  # no NVIDIA Container Toolkit
    ]
}
NO_TOOLKIT = 'could not select device driver "" with capabilities: [[gpu]]'
PRINT_GPUS = (
    "--entrypoint",
    "/usr/bin/python3.11",
    "lab/vllm:stable",
    "-c",
    "import os; print(os.environ.get('NVIDIA_VISIBLE_DEVICES'))",
)


# -- no root needed -----------------------------------------------------------------------------------------


def test_docker_is_on_unless_the_lab_or_the_host_says_otherwise():
    spec = parse_spec({"hosts": [{"name": "a"}, {"name": "b", "docker": False}]})
    assert [h.docker for h in spec.hosts] == [True, False] and spec.docker
    off = parse_spec({"lab": {"docker": False}, "hosts": [{"name": "a"}, {"name": "b", "docker": True}]})
    assert [h.docker for h in off.hosts] == [False, True]
    assert parse_spec(off.to_dict()).to_dict() == off.to_dict()  # state.json keeps it
    assert [h.docker for h in off.with_network("zz", "10.9.9.0/24").hosts] == [False, True]
    assert all(h.docker and h.table["nvidia_container_toolkit"] for h in load_spec(None).hosts)


@pytest.mark.parametrize(
    "text, problem",
    [
        ('[[hosts]]\nname = "a"\ndocker = "yes"\n', ":3: host a: docker: expected true or false"),
        ('[lab]\ndocker = 1\n[[hosts]]\nname = "a"\n', ":2: lab: docker: expected true or false"),
    ],
)
def test_a_bad_docker_value_names_its_line(tmp_path, text, problem):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(e.value) == f"{path}{problem}"


def test_sessions_get_their_hosts_docker_host_only_when_it_has_a_dockerd(tmp_path):
    layout = plan_layout(parse_spec({"hosts": [{"name": "a"}]}))
    paths = LabPaths(tmp_path)
    files = dockerd.DockerdFiles(paths.docker_dir(layout.hosts[0]))
    env = session_env(paths, layout.hosts[0], files.host)
    assert env["DOCKER_HOST"] == f"unix://{tmp_path}/hosts/a/docker/docker.sock"
    assert "DOCKER_HOST" not in session_env(paths, layout.hosts[0])


def test_dockerd_starts_with_nsenter_and_its_own_state_and_id(tmp_path):
    files = dockerd.DockerdFiles(tmp_path / "docker")
    argv = dockerd.launch_argv(files, "fl-a")
    assert argv[argv.index("--net=/run/netns/fl-a") - 1].endswith("/nsenter")
    assert not any(a.endswith("/ip") for a in argv)  # `ip netns exec` hides the cgroups
    for flag, value in (
        ("--data-root", files.data_root),
        ("--exec-root", files.exec_root),
        ("--pidfile", files.pidfile),
        ("-H", files.host),
        ("--config-file", files.config),
    ):
        assert argv[argv.index(flag) + 1] == str(value)
    assert {"--bridge=none", "--iptables=false", "--ip-masq=false"} <= set(argv)
    assert dockerd.daemon_config(files)["deprecated-key-path"].startswith(str(files.dir))
    assert dockerd.launch_env(tmp_path / "bin")["PATH"].startswith(f"{tmp_path}/bin:")
    assert dockerd.launch_env(None)["PATH"] == SYSTEM_PATH  # no hook: no nvidia driver


def test_a_folder_too_deep_for_dockerds_sockets_is_refused(tmp_path):
    with pytest.raises(LabError, match="path too long for dockerd's sockets"):
        dockerd.check_socket_room(dockerd.DockerdFiles(tmp_path / ("x" * 80) / "docker"))


def test_lab_profiles_are_valid_fleetctl_profiles(tmp_path):
    paths = catalog.write_profiles(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{t}.toml" for t in ("stable", "next", "failing", "slow", "crash", "never-ready", "other-stable", "other-next")
    )
    matrix = load_matrix((str(ROOT / "profiles"),))
    parsed = {p.stem: parse_profile(p.read_text(), str(p), matrix) for p in paths}
    assert {(n, p.image, p.vllm) for n, p in parsed.items() if n in ("stable", "next")} == {
        ("stable", "lab/vllm:stable", "0.32.0"),
        ("next", "lab/vllm:next", "0.32.1"),
    }
    for name, profile in parsed.items():
        assert profile.name == name and profile.cuda == "12.8" and str(profile.requires.gpus) == ">=1"
        model, served = ("lab/other-model", "other") if name.startswith("other-") else ("lab/tiny-llama",) * 2
        assert (profile.serve.model, profile.serve.port, profile.serve.gpus) == (model, 8000, "all")
        assert profile.serve.served_name == served
    assert (parsed["other-next"].image, parsed["other-next"].serve.args[-2:]) == (
        "lab/vllm:next",
        ("--served-model-name", "other"),
    )
    assert parsed["never-ready"].serve.health_timeout_s < parsed["stable"].serve.health_timeout_s
    written = [p.stat().st_mtime_ns for p in paths]
    time.sleep(0.01)
    assert catalog.write_profiles(tmp_path) == paths and [p.stat().st_mtime_ns for p in paths] == written


# -- a lab with two docker hosts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(lab_factory):
    found = docker_problems()
    if found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the lab's dockerds cannot run here: {found[0]}", pytrace=False)
        pytest.skip(f"the lab's dockerds cannot run here: {found[0]}")
    return lab_factory(SPEC, "docker")


def ssh(info, host: str, command: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(info.ssh_command(host, command), input=stdin, capture_output=True, text=True, timeout=timeout)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def wait_http(url: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = get(url)
            if status == 200:
                return body
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no 200 from {url} after {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.lab
def test_each_host_reaches_its_own_daemon_over_ssh(lab):
    seen = {}
    for host in lab.hosts:
        run = ssh(
            lab,
            host.name,
            'echo "$DOCKER_HOST"; docker info --format "{{.ID}}|{{.DockerRootDir}}"; '
            'docker version --format "{{.Server.Version}}"',
        )
        assert run.returncode == 0, run.stderr
        docker_host, info, version = run.stdout.split()
        daemon_id, root_dir = info.split("|")
        assert docker_host == host.docker_host == f"unix://{host.dir}/docker/docker.sock"
        assert root_dir == str(host.dir / "docker" / "data") and version
        seen[host.name] = daemon_id
    assert len(set(seen.values())) == len(lab.hosts)  # a daemon of its own each
    dial = ssh(lab, "dk-plain", "docker system dial-stdio", stdin="GET /_ping HTTP/1.0\r\n\r\n")
    assert dial.stdout.startswith("HTTP/1.0 200") and dial.stdout.endswith("OK"), dial.stderr  # docker-py's way


@pytest.mark.lab
def test_gpu_requests_need_the_container_toolkit_as_on_a_real_host(lab):
    ok = ssh(lab, "dk-gpu", "docker run --rm --gpus all " + shlex.join(PRINT_GPUS))
    assert (ok.returncode, ok.stdout.strip()) == (0, "all"), ok.stderr
    refused = ssh(lab, "dk-plain", "docker run --rm --gpus all " + shlex.join(PRINT_GPUS))
    assert refused.returncode == 125 and NO_TOOLKIT in refused.stderr
    plain = ssh(lab, "dk-plain", "docker run --rm " + shlex.join(PRINT_GPUS))
    assert (plain.returncode, plain.stdout.strip()) == (0, "None"), plain.stderr  # no GPU asked, none given


@pytest.mark.lab
def test_images_stand_for_versions_and_behaviours(lab):
    files = dockerd.DockerdFiles(lab.host("dk-plain").dir / "docker")
    tarball, digest = catalog.rootfs()
    present = catalog.present_images(lambda *a: dockerd.cli(files, *a), [i.ref for i in catalog.IMAGES])
    assert set(present) == {f"lab/vllm:{t}" for t in ("stable", "next", "failing", "slow", "crash", "never-ready")}
    for wanted in catalog.IMAGES:
        labels = present[wanted.ref][1]
        assert (labels[images.LABEL_BEHAVIOUR], labels[images.LABEL_VERSION]) == (wanted.behaviour, wanted.version)
        assert labels[images.LABEL_ROOTFS] == digest == images.rootfs_digest(tarball)
    assert tarball.parent == catalog.IMAGE_CACHE
    stems = [i.tag for i in catalog.IMAGES] + [f"other-{t}" for t in catalog.OTHER_TAGS]
    assert sorted(p.stem for p in lab.profiles.glob("*.toml")) == sorted(stems)


@pytest.mark.lab
def test_a_missing_tag_is_imported_once_then_loaded_from_the_bundle(lab, tmp_path):
    tarball, digest = catalog.rootfs()
    bundle = tmp_path / "bundle.tar"
    daemons = {
        h: (lambda *a, f=dockerd.DockerdFiles(lab.host(h).dir / "docker"): dockerd.cli(f, *a))
        for h in ("dk-plain", "dk-gpu")
    }
    refs = [i.ref for i in catalog.IMAGES]
    assert catalog.ensure_images(daemons["dk-plain"], tarball, digest, bundle) == "present"
    assert daemons["dk-plain"]("image", "rm", "lab/vllm:slow").returncode == 0
    assert catalog.ensure_images(daemons["dk-plain"], tarball, digest, bundle) == "imported" and bundle.is_file()
    assert daemons["dk-gpu"]("image", "rm", "lab/vllm:crash").returncode == 0
    assert catalog.ensure_images(daemons["dk-gpu"], tarball, digest, bundle) == "loaded"
    plain, gpu = (catalog.present_images(daemons[h], refs) for h in ("dk-plain", "dk-gpu"))
    assert set(plain) == set(refs) and plain == gpu  # same image IDs on both hosts
    for docker in daemons.values():
        assert docker("images", "-q", "--filter", "dangling=true").stdout.strip() == ""


@pytest.mark.lab
def test_host_network_containers_answer_at_the_hosts_lab_address(lab):
    for host, tag, version in (("dk-gpu", "stable", "0.32.0"), ("dk-plain", "next", "0.32.1")):
        run = ssh(lab, host, f"docker run -d --name probe --network host lab/vllm:{tag} lab/tiny-llama --port 8000")
        assert run.returncode == 0, run.stderr
        base = f"http://{lab.host(host).address}:8000"
        wait_http(f"{base}/health")
        assert json.loads(wait_http(f"{base}/version")) == {"version": version}
        assert json.loads(wait_http(f"{base}/v1/models"))["data"][0]["id"] == "lab/tiny-llama"
    with pytest.raises(OSError):
        get(f"http://{lab.host('dk-gpu').address}:8001/health")  # nothing else listens there


@pytest.mark.lab
def test_up_again_keeps_daemons_images_and_containers_and_repairs_a_dead_daemon(lab):
    lab_ = lab.lab()
    files = dockerd.DockerdFiles(lab.host("dk-gpu").dir / "docker")
    images_before = catalog.present_images(lambda *a: dockerd.cli(files, *a), [i.ref for i in catalog.IMAGES])
    status = lab_.status()
    start = time.monotonic()
    lab_.up()
    again_s = time.monotonic() - start
    assert lab_.status() == status and all(h["docker"] for h in status["hosts"])  # same dockerd pids
    assert catalog.present_images(lambda *a: dockerd.cli(files, *a), list(images_before)) == images_before
    assert again_s < 15, f"second up took {again_s:.1f} s"
    lab_.stop_dockerd("dk-plain")
    down = cli("status", "--dir", str(lab.root))
    assert down.returncode == 3 and "dockerd DOWN" in down.stdout and "dockerd up" in down.stdout
    lab_.up()
    assert ssh(lab, "dk-plain", "docker images -q lab/vllm:stable").stdout.strip()
    assert cli("status", "--dir", str(lab.root)).returncode == 0
    assert ssh(lab, "dk-gpu", "docker inspect -f '{{.State.Running}}' probe").stdout.strip() == "true"


@pytest.mark.lab
def test_down_leaves_no_daemon_mount_file_or_namespace(lab):
    running = ssh(lab, "dk-gpu", "docker ps -q --no-trunc").stdout.split()
    assert running, "the probe container from the test before should still run"
    address = lab.host("dk-gpu").dir / "docker" / "exec" / "containerd" / "containerd.sock"
    shim_sockets = [
        Path("/run/containerd/s") / hashlib.sha256(f"{address}/moby/{c}".encode()).hexdigest() for c in running
    ]
    assert all(s.exists() for s in shim_sockets)
    assert dockerd.mounts_under(lab.root)  # the probe's rootfs, at least
    tarball, _ = catalog.rootfs()
    run = cli("down", "--dir", str(lab.root))
    assert run.returncode == 0 and f"kept the image cache {catalog.IMAGE_CACHE}" in run.stdout, run.stderr
    assert str(lab.root) not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not dockerd.mounts_under(lab.root) and not lab.root.exists()
    assert not [s for s in shim_sockets if s.exists()]
    assert not [ns for ns in netns.namespaces() if ns.startswith(f"{lab.spec.prefix}-")]
    assert tarball.exists()  # the cache outlives the lab


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/lab under Debian's python3: stdlib only, no virtualenv."""
    return subprocess.run(["/usr/bin/python3", str(LAB), *args], capture_output=True, text=True, timeout=120)
