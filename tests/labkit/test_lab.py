"""The lab itself: spec checks, then real namespaces and sshd reached with the real OpenSSH client."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import pynvml
from labkit import netns
from labkit.layout import interface_name, plan_layout
from labkit.spec import SpecError, load_spec, parse_spec

LAB = ROOT / "scripts" / "lab"
HOST_PYTHON = "/usr/bin/python3"
PYNVML_DIR = str(Path(pynvml.__file__).parent)
# These labs test namespaces and sshd; test_lab_docker.py tests the hosts' dockerds (slower to start).
BASIC = {
    "lab": {"docker": False},
    "hosts": [
        {
            "name": "ok-1",
            "ring": "canary",
            "gpu": "NVIDIA A100-SXM4-80GB",
            "gpu_count": 2,
            "nvidia_container_toolkit": "1.17.8",
        },
        {"name": "nopy-1", "ring": "main", "python3": False},
        {"name": "nodrv-1", "ring": "main", "nvml": "driver-not-loaded"},
    ],
}
BASTION = {"lab": {"bastion": True, "docker": False}, "hosts": [{"name": "far-1"}, {"name": "far-2"}]}
NAME_PROBE = (
    "import pynvml as n\ntry:\n    n.nvmlInit()\nexcept n.NVMLError as e:\n    print(type(e).__name__)\n"
    "else:\n    print(n.nvmlDeviceGetCount(), n.nvmlDeviceGetName(n.nvmlDeviceGetHandleByIndex(0)))\n"
)


def ssh(info, host: str, command: str, *extra: str, stdin: str = "", known_hosts: Path | None = None):
    """The real OpenSSH client with strict host key checking against the lab's known_hosts."""
    argv = [
        "ssh",
        *extra,
        "-F",
        str(info.ssh_config),
        "-i",
        str(info.identity_file),  # first value wins
        "-o",
        f"UserKnownHostsFile={known_hosts or info.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=3",
        host,
        command,
    ]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def basic(lab_factory):
    return lab_factory(BASIC, "basic")


# -- the spec (no root needed) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ('[[hosts]]\nname = "a"\ngpu_count = 99\n', ":3: ", "host a: gpu_count: expected an integer"),
        ('[[hosts]]\nname = "a"\n\n[[hosts]]\nname = "b"\ncolour = 1\n', ":6: ", "host b: colour: unknown key"),
        ('[[hosts]]\nname = "a"\n[[hosts]]\nname = "a"\n', ":4: ", "host a: name: used twice"),
        ('[lab]\nprefix = "Way-Too-Long"\n[[hosts]]\nname = "a"\n', ":2: ", "lab: prefix: expected"),
        ('[lab]\nsubnet = "8.8.8.0/24"\n[[hosts]]\nname = "a"\n', ":2: ", "lab: subnet: expected a private"),
        ('[[hosts]\nname = "a"\n', ":1: ", "Expected ']]'"),
        ("[lab]\nbastion = true\n", ": ", "hosts: expected one or more [[hosts]] tables"),
    ],
)
def test_a_bad_spec_names_file_line_and_problem(tmp_path, text, where, problem):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(e.value).startswith(f"{path}{where}") and problem in str(e.value)


def test_default_spec_is_four_healthy_hosts():
    spec = load_spec(None)
    assert [(h.name, h.ring) for h in spec.hosts] == [
        ("gpu-01", "canary"),
        ("gpu-02", "early"),
        ("gpu-03", "main"),
        ("gpu-04", "main"),
    ]
    assert all(h.python3 and h.nvml == "ok" for h in spec.hosts) and not spec.bastion


def test_layout_keeps_interface_names_short_and_addresses_in_order():
    spec = parse_spec(
        {
            "lab": {"prefix": "abcdefgh", "bastion": True, "subnet": "10.9.8.0/24"},
            "hosts": [{"name": "h1"}, {"name": "a-rather-long-host-name-01"}],
        }
    )
    layout = plan_layout(spec)
    names = [layout.bridge] + [n.veth for n in layout.nodes]
    assert all(len(n) <= 15 for n in names) and len(set(names)) == len(names)
    assert [n.address for n in layout.nodes] == ["10.9.8.2", "10.9.8.11", "10.9.8.12"]
    assert interface_name("fl", "gpu-01") == "fl-gpu-01"
    assert {n.outer_ns for n in layout.hosts} == {"abcdefgh-bastion"}


# -- a running lab ------------------------------------------------------------------------------------------


def test_login_verifies_the_hosts_own_key(basic, tmp_path):
    lines = basic.known_hosts.read_text().splitlines()
    keys = {h.address: " ".join((h.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]) for h in basic.hosts}
    assert sorted(lines) == sorted(f"{address} {key}" for address, key in keys.items())
    assert len(set(keys.values())) == 3  # every host has its own key
    for host in basic.hosts:
        run = ssh(basic, host.address, "hostname")
        assert (run.returncode, run.stdout.strip()) == (0, host.name), run.stderr
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{basic.hosts[0].address} {keys[basic.hosts[1].address]}\n")
    refused = ssh(basic, basic.hosts[0].address, "true", known_hosts=wrong)
    assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_sessions_see_their_hosts_fake_gpu(basic):
    ok = basic.host("ok-1")
    run = ssh(basic, ok.address, 'echo "$FAKE_NVML_CONFIG|$LD_LIBRARY_PATH"; nvidia-ctk --version')
    config, libdir = run.stdout.splitlines()[0].split("|")
    assert Path(config) == ok.dir / "nvml.conf" and "NVIDIA A100-SXM4-80GB" in Path(config).read_text()
    assert (Path(libdir) / "libnvidia-ml.so.1").exists()
    assert "NVIDIA Container Toolkit CLI version 1.17.8" in run.stdout


def test_real_pynvml_over_ssh_reads_the_spec(basic):
    with_pynvml = f"PYTHONPATH={PYNVML_DIR} python3 -"
    healthy = ssh(basic, basic.host("ok-1").address, with_pynvml, stdin=NAME_PROBE)
    assert healthy.stdout.strip() == "2 NVIDIA A100-SXM4-80GB", healthy.stderr
    no_driver = ssh(basic, basic.host("nodrv-1").address, with_pynvml, stdin=NAME_PROBE)
    assert no_driver.stdout.strip() == "NVMLError_DriverNotLoaded", no_driver.stderr


def test_a_host_without_python3_says_command_not_found(basic):
    run = ssh(basic, basic.host("nopy-1").address, "python3 -", stdin="print(1)\n")
    assert run.returncode == 127 and "python3: command not found" in run.stderr
    tools = ssh(basic, basic.host("nopy-1").address, "command -v ls && nvidia-smi -L")
    assert tools.returncode == 0 and "GPU 0: NVIDIA H100 80GB HBM3" in tools.stdout


def test_fleet_file_lists_the_hosts_for_fleetctl(basic):
    fleet = tomllib.loads(basic.fleet_file.read_text())
    assert [(h["name"], h["address"], h["ring"]) for h in fleet["hosts"]] == [
        (h.name, h.address, h.ring) for h in basic.hosts
    ]
    assert fleet["ssh"]["identity_file"] == str(basic.identity_file) and "proxy_jump" not in fleet["ssh"]
    assert fleet["ssh"]["host_key_policy"] == "strict" and Path(fleet["ssh"]["known_hosts"]).is_absolute()


def test_up_again_keeps_what_is_right_and_repairs_the_rest(basic):
    lab = basic.lab()
    before = (basic.known_hosts.read_text(), basic.fleet_file.read_text(), lab.status())
    again = lab.up()
    assert (again.known_hosts.read_text(), again.fleet_file.read_text(), lab.status()) == before  # same pids too
    victim = basic.host("ok-1")
    lab.stop_sshd(victim.name)
    refused = ssh(basic, victim.address, "true")
    assert refused.returncode == 255 and "Connection refused" in refused.stderr
    netns.ip("link", "del", "eth0", ns=victim.namespace)
    status = cli("status", "--dir", str(basic.root))
    assert status.returncode == 3 and "sshd DOWN" in status.stdout
    assert [h.address for h in lab.up().hosts] == [h.address for h in basic.hosts]
    assert basic.known_hosts.read_text() == before[0]  # same host keys
    assert ssh(basic, victim.address, "hostname").stdout.strip() == victim.name
    assert cli("status", "--dir", str(basic.root)).returncode == 0


def test_bastion_hosts_are_reachable_only_through_the_jump_host(lab_factory):
    info = lab_factory(BASTION, "bastion")
    fleet = tomllib.loads(info.fleet_file.read_text())
    assert fleet["ssh"]["proxy_jump"] == f"root@{info.bastion}"
    assert any(line.startswith(f"{info.bastion} ") for line in info.known_hosts.read_text().splitlines())
    far = info.host("far-1")
    direct = ssh(info, far.address, "true", "-o", "ProxyJump=none", "-o", "ConnectTimeout=1")
    assert direct.returncode == 255
    jumped = ssh(info, far.address, "hostname", "-J", f"root@{info.bastion}")
    assert (jumped.returncode, jumped.stdout.strip()) == (0, "far-1"), jumped.stderr
    assert all(
        not netns.addresses(entry) for name, entry in netns.links().items() if entry.get("master") == "br-in"
    )  # the root namespace has no leg there


def test_down_leaves_nothing_behind(lab_factory):
    info = lab_factory({"lab": {"docker": False}, "hosts": [{"name": "gone-1"}, {"name": "gone-2"}]}, "down")
    lab = info.lab()
    prefix = f"{info.spec.prefix}-"
    assert ssh(info, info.hosts[0].address, "true").returncode == 0
    lab.down()
    assert not [ns for ns in netns.namespaces() if ns.startswith(prefix)]
    assert not [name for name in netns.links() if name.startswith(prefix)]
    assert str(info.root) not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not info.root.exists()
    lab.down()  # twice is fine
    assert cli("down", "--dir", str(info.root)).returncode == 0
    assert cli("status", "--dir", str(info.root)).returncode == 2


def test_cli_refuses_without_root_and_on_a_bad_spec(lab_factory, tmp_path):
    as_nobody = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", HOST_PYTHON, str(LAB), "status"],
        capture_output=True,
        text=True,
    )
    assert as_nobody.returncode == 2 and "needs root" in as_nobody.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[hosts]]\nname = "a"\nnvml = "melted"\n')
    run = cli("up", "--spec", str(bad), "--dir", str(tmp_path / "lab"))
    assert run.returncode == 2 and run.stderr.startswith(f"scripts/lab: {bad}:3: host a: nvml:")
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "lab").exists()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/lab under Debian's python3: stdlib only, no virtualenv."""
    return subprocess.run([HOST_PYTHON, str(LAB), *args], capture_output=True, text=True, timeout=60)


def test_status_json_shape(basic):
    status = basic.lab().status()
    assert status["exists"] and status["up"] and json.dumps(status)
    assert [h["name"] for h in status["hosts"]] == ["ok-1", "nopy-1", "nodrv-1"] and status["bastion"] is None
