"""A lab host reboots and installs a driver: stand-ins, never the machine's own reboot, state kept on its disk."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import pynvml
from labkit import driver, power, standins
from labkit.fakenvml.config import cuda_version_int
from labkit.preflight import docker_problems
from labkit.spec import SpecError, load_spec, parse_spec

PYNVML_DIR = str(Path(pynvml.__file__).parent)
MATRIX = ROOT / "profiles" / "matrix" / "cuda_driver.toml"
SPEC = {
    "lab": {"reboot_s": 1},
    "hosts": [
        # down for 5 s: long enough to see its address stop answering on a busy machine
        {"name": "rb-dock", "ring": "canary", "nvidia_container_toolkit": "1.17.8", "reboot_s": 5},
        {"name": "rb-bare", "ring": "main", "docker": False, "fabric_manager": "570.133.20", "reboot_s": 0.5},
    ],
}
NVML_PROBE = (
    "import pynvml as n\ntry:\n    n.nvmlInit()\nexcept n.NVMLError as e:\n    print(type(e).__name__)\n"
    "else:\n    print(n.nvmlSystemGetDriverVersion(), n.nvmlSystemGetCudaDriverVersion())\n"
)
MACHINE_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


# -- no root needed -------------------------------------------------------------------------------------------


def test_each_driver_reports_the_newest_cuda_whose_minimum_it_meets():
    releases = tomllib.loads(MATRIX.read_text())["release"]
    ga = sorted(
        ((r["cuda"], r["min_driver"]) for r in releases if r["cuda"].count(".") == 1), key=lambda r: _version(r[0])
    )
    for version, cuda in driver.DRIVER_CUDA.items():
        met = [c for c, minimum in ga if _version(version) >= _version(minimum)]
        assert met and met[-1] == cuda, f"{version}: reports {cuda}, the matrix says {met[-1:]}"


@pytest.mark.parametrize(
    "installed, driver_, cuda, nvml, fm",
    [
        ({}, "570.133.20", "12.8", "ok", "570.133.20"),
        ({"pending_driver": "575.57.08"}, "570.133.20", "12.8", "version-mismatch", "570.133.20"),
        ({"pending_driver": "570.133.20"}, "570.133.20", "12.8", "ok", "570.133.20"),  # the running one again
        ({"driver": "575.57.08"}, "575.57.08", "12.9", "ok", "570.133.20"),
        ({"driver": "580.65.06", "fabric_manager": "580.65.06"}, "580.65.06", "13.0", "ok", "580.65.06"),
    ],
)
def test_what_the_disk_has_installed_is_what_the_host_runs(installed, driver_, cuda, nvml, fm):
    table = driver.effective_table({"name": "h", "fabric_manager": "570.133.20"}, installed)
    assert (table["driver"], table["cuda"], table["nvml"], table["fabric_manager"]) == (driver_, cuda, nvml, fm)


def test_a_pending_driver_answers_as_the_new_library_and_a_boot_loads_it():
    raw = {"name": "h"}
    text = driver.render_nvml_config(raw, {"pending_driver": "575.57.08"})
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert values["nvml"] == "version-mismatch" and values["nvml_version"] == "12.575.57.08"
    assert driver.boot({"pending_driver": "575.57.08", "fabric_manager": "575.57.08"}) == {
        "driver": "575.57.08",
        "fabric_manager": "575.57.08",
    }
    assert driver.boot({"driver": "575.57.08"}) == {"driver": "575.57.08"}


def test_lab_driver_fails_like_apt_for_an_unknown_version_and_changes_nothing(tmp_path, capsys):
    assert driver.main(["install", "999.1.2"], tmp_path, {"name": "h"}) == driver.APT_ERROR
    assert capsys.readouterr().err == "E: Version '999.1.2' for 'nvidia-driver' was not found\n"
    assert driver.main(["install-fabric-manager", "1.0"], tmp_path, {"name": "h"}) == driver.APT_ERROR
    assert "'nvidia-fabricmanager' was not found" in capsys.readouterr().err
    assert driver.main(["remove", "575.57.08"], tmp_path, {"name": "h"}) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_torn_installed_file_counts_as_nothing_installed(tmp_path):
    (tmp_path / "installed.json").write_text('{"driver": "1.2.3", "pending_driver": [1]}')
    assert driver.read_installed(tmp_path) == {}
    (tmp_path / "installed.json").write_text("{")
    assert driver.read_installed(tmp_path) == {}


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ('[lab]\nreboot_s = "3"\n[[hosts]]\nname = "a"\n', 2, "lab: reboot_s: expected seconds from 0 to 3600"),
        ('[[hosts]]\nname = "a"\nreboot_s = -1\n', 3, "host a: reboot_s: expected seconds from 0 to 3600"),
        ("[lab]\nreboot_s = true\n[[hosts]]\nname = 'a'\n", 2, "lab: reboot_s: expected seconds"),
    ],
)
def test_a_bad_reboot_s_names_its_line(tmp_path, text, line, problem):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(e.value).startswith(f"{path}:{line}: {problem}")


def test_reboot_s_comes_from_the_host_then_the_lab_then_three_seconds():
    spec = parse_spec({"lab": {"reboot_s": 7}, "hosts": [{"name": "a"}, {"name": "b", "reboot_s": 0.5}]})
    assert [h.reboot_s for h in spec.hosts] == [7.0, 0.5]
    assert parse_spec({"hosts": [{"name": "a"}]}).hosts[0].reboot_s == 3.0


def test_sshd_starts_with_the_boot_id_and_masks_bound_and_without_cap_sys_boot():
    argv = standins.boot_command("h", Path("/lab/h/boot_id"), [("/lab/h/bin/reboot", "/usr/bin/systemctl")], ["sshd"])
    script = argv[2]
    assert argv[3:] == ["h", "sshd"]
    assert "mount --bind /lab/h/boot_id /proc/sys/kernel/random/boot_id" in script
    assert "mount --bind /lab/h/bin/reboot /usr/bin/systemctl" in script
    assert script.endswith('--bounding-set -sys_boot -- "$@"') and " && " in script  # a failed step stops it


def test_masks_cover_each_of_the_machines_power_tools_that_exists(tmp_path):
    pairs = dict((target, source) for source, target in standins.masks(tmp_path / "bin"))
    for folder in standins.SYSTEM_DIRS:
        for name in ("reboot", "shutdown", "halt", "poweroff", "systemctl", "sudo"):
            real = os.path.realpath(os.path.join(folder, name))
            if os.path.isfile(real):
                want = "sudo" if name == "sudo" else "reboot"
                assert pairs.get(real) == str(tmp_path / "bin" / want), real
    assert all(os.path.exists(target) for target in pairs)  # nothing is made on the machine's disk


@pytest.fixture
def standin_host(tmp_path):
    """A host folder with the stand-ins, and a process that passes for the lab's power helper."""
    lab_root, host_dir = tmp_path / "lab", tmp_path / "lab" / "hosts" / "h"
    (lab_root / "power").mkdir(parents=True)
    (host_dir / "bin").mkdir(parents=True)
    for name, text in standins.scripts("h", host_dir, lab_root, sys.executable).items():
        (host_dir / "bin" / name).write_text(text)
        (host_dir / "bin" / name).chmod(0o755)
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(lab_root)])
    (lab_root / "power" / "power.pid").write_text(f"{helper.pid}\n")
    yield host_dir, helper
    helper.kill()
    helper.wait()


def _run(host_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{host_dir / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env, timeout=10)


@pytest.mark.parametrize(
    "command",
    [
        "reboot",
        "reboot -f",
        "shutdown -r now",
        "shutdown -r +0 'kernel update'",
        "systemctl reboot",
        "systemctl --no-block reboot",
        "sudo reboot",
        "sudo -n systemctl reboot",
        "sudo -n -u root -- lab-reboot",
        "telinit 6",
    ],
)
def test_each_way_to_reboot_asks_the_lab_for_this_host(standin_host, command):
    host_dir, _ = standin_host
    run = _run(host_dir, command)
    assert (run.returncode, run.stderr) == (0, "")
    assert (host_dir / "power" / "request").read_text() == "reboot\n"


@pytest.mark.parametrize(
    "command, message",
    [
        ("shutdown -h now", "lab hosts only reboot"),
        ("poweroff", "lab hosts only reboot"),
        ("systemctl poweroff", "lab hosts only reboot"),
        ("reboot -p", "lab hosts only reboot"),
        ("shutdown -r", "the lab reboots only now"),
        ("shutdown -r 23:00", "the lab reboots only now"),
        ("systemctl restart docker", "systemctl restart: not on a lab host"),
        ("sudo -u nobody reboot", "sudo: lab hosts know only root"),
        ("sudo -s", "sudo: -s: not supported on a lab host"),
        ("sudo no-such-tool", "sudo: no-such-tool: command not found"),
    ],
)
def test_what_the_lab_does_not_do_is_refused_and_nothing_is_asked(standin_host, command, message):
    host_dir, _ = standin_host
    run = _run(host_dir, command)
    assert run.returncode != 0 and message in run.stderr
    assert not (host_dir / "power" / "request").exists()


def test_without_the_power_helper_a_reboot_fails_and_says_why(standin_host):
    host_dir, helper = standin_host
    helper.kill()
    helper.wait()
    run = _run(host_dir, "reboot")
    assert run.returncode == 1 and "power helper is not running" in run.stderr
    assert not (host_dir / "power" / "request").exists()


# -- a lab (root) ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(lab_factory):
    found = docker_problems()
    if found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the lab's dockerds cannot run here: {found[0]}", pytrace=False)
        pytest.skip(f"the lab's dockerds cannot run here: {found[0]}")
    return lab_factory(SPEC, "reboot")


def ssh(info, host: str, command: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(info.ssh_command(host, command), input=stdin, capture_output=True, text=True, timeout=timeout)


def boot_id(info, host: str) -> str:
    run = ssh(info, host, "cat /proc/sys/kernel/random/boot_id")
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def nvml(info, host: str) -> str:
    return ssh(info, host, f"PYTHONPATH={PYNVML_DIR} python3 -", stdin=NVML_PROBE).stdout.strip()


def port_answers(address: str, port: int = 22) -> bool:
    """True if the address answers at all: a listener, or a refusal (a live host without one)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except ConnectionRefusedError:
        return True
    except OSError as e:
        assert isinstance(e, TimeoutError) or e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH), e
        return False


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)


def wait_rebooted(info, host: str, before: str, timeout_s: float = 90) -> str:
    """Wait until SSH answers with a boot id other than before; returns the new one."""
    seen = {"id": before}

    def back() -> bool:
        run = ssh(info, host, "cat /proc/sys/kernel/random/boot_id", timeout=15)
        seen["id"] = run.stdout.strip() if run.returncode == 0 else before
        return seen["id"] != before

    wait_for(back, timeout_s, f"{host} back after its reboot")
    return seen["id"]


def docker_state(info, host: str) -> list[str]:
    run = ssh(info, host, "docker ps -a --format '{{.Names}} {{.Image}} {{.ID}}' && docker images -q | sort")
    assert run.returncode == 0, run.stderr
    return sorted(run.stdout.split("\n"))


@pytest.mark.lab
def test_each_host_has_its_own_boot_id_and_no_cap_sys_boot(lab):
    ids = {h.name: boot_id(lab, h.name) for h in lab.hosts}
    assert len(set(ids.values()) | {MACHINE_BOOT_ID.read_text().strip()}) == 3
    caps = ssh(lab, "rb-bare", "grep CapBnd /proc/self/status").stdout.split()[1]
    assert not int(caps, 16) & (1 << 22)  # CAP_SYS_BOOT
    assert ssh(lab, "rb-bare", "command -v reboot sudo lab-driver").stdout.split() == [
        str(lab.host("rb-bare").dir / "bin" / n) for n in ("reboot", "sudo", "lab-driver")
    ]


@pytest.mark.lab
@pytest.mark.parametrize(
    "command",
    ["reboot", "shutdown -r now", "systemctl reboot", "sudo reboot", "/usr/sbin/reboot", "/usr/bin/systemctl reboot"],
)
def test_each_reboot_command_reboots_only_that_lab_host(lab, command):
    machine, other = MACHINE_BOOT_ID.read_text(), boot_id(lab, "rb-dock")
    before = boot_id(lab, "rb-bare")
    run = ssh(lab, "rb-bare", command)
    assert run.returncode in (0, 255), run.stderr  # 255: the session dropped before the command's answer
    wait_rebooted(lab, "rb-bare", before)
    assert MACHINE_BOOT_ID.read_text() == machine and boot_id(lab, "rb-dock") == other


@pytest.mark.lab
def test_a_reboot_drops_sessions_and_the_address_then_comes_back_from_its_disk(lab):
    host = lab.host("rb-dock")
    for name, restart in (("always-on", "always"), ("one-off", "no")):
        run = ssh(
            lab,
            host.name,
            f"docker run -d --name {name} --restart {restart} --network host "
            f"--entrypoint /usr/bin/python3.11 lab/vllm:stable -c 'import time; time.sleep(3600)'",
        )
        assert run.returncode == 0, run.stderr
    state, key, before = (
        docker_state(lab, host.name),
        (host.dir / "ssh_host_ed25519_key.pub").read_text(),
        boot_id(lab, host.name),
    )
    session = subprocess.Popen(
        lab.ssh_command(host.name, "sleep 600"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1)
    assert ssh(lab, host.name, "sudo -n reboot").returncode in (0, 255)
    assert session.wait(timeout=60) != 0  # the open session dropped
    wait_for(lambda: not port_answers(host.address), 30, f"{host.address} stops answering")
    after = wait_rebooted(lab, host.name, before)
    assert after != before and len(after) == 36
    assert (host.dir / "ssh_host_ed25519_key.pub").read_text() == key  # and ssh checked it against known_hosts
    assert docker_state(lab, host.name) == state  # images and containers, as they were
    running = ssh(lab, host.name, "docker inspect -f '{{.Name}} {{.State.Running}}' always-on one-off").stdout.split()
    assert running == ["/always-on", "true", "/one-off", "false"]  # as dockerd restarts them after a boot
    assert power.host_state(host.dir) == "up"


@pytest.mark.lab
def test_a_driver_installs_mismatches_until_the_reboot_and_up_keeps_it(lab, lab_factory):
    host = lab.host("rb-bare")
    unknown = ssh(lab, host.name, "lab-driver install 575.99.99")
    assert unknown.returncode == 100 and "E: Version '575.99.99' for 'nvidia-driver' was not found" in unknown.stderr
    assert nvml(lab, host.name) == "570.133.20 12080"
    install = ssh(lab, host.name, "sudo -n lab-driver install 575.57.08 && lab-driver install-fabric-manager 575.57.08")
    assert install.returncode == 0, install.stderr
    assert nvml(lab, host.name) == "NVMLError_LibRmVersionMismatch"
    smi = ssh(lab, host.name, "nvidia-smi")
    assert smi.returncode == 18 and "Driver/library version mismatch" in smi.stdout
    assert ssh(lab, host.name, "nv-fabricmanager --version").stdout.strip() == "Fabric Manager version is : 575.57.08"
    lab_factory(SPEC, "reboot")  # `scripts/lab up` again: no reboot, so still the old kernel module
    assert nvml(lab, host.name) == "NVMLError_LibRmVersionMismatch"
    before = boot_id(lab, host.name)
    assert ssh(lab, host.name, "reboot").returncode in (0, 255)
    wait_rebooted(lab, host.name, before)
    assert nvml(lab, host.name) == f"575.57.08 {cuda_version_int('12.9')}"
    assert "Driver Version: 575.57.08    CUDA Version: 12.9" in ssh(lab, host.name, "nvidia-smi").stdout
    lab_factory(SPEC, "reboot")
    assert nvml(lab, host.name) == "575.57.08 12090"
    assert json.loads((host.dir / "installed.json").read_text()) == {
        "driver": "575.57.08",
        "fabric_manager": "575.57.08",
    }


@pytest.mark.lab
def test_the_labs_fleet_file_names_the_labs_reboot_command(lab):
    text = lab.fleet_file.read_text()
    assert f'[maintain]\nreboot_command = "{standins.REBOOT_COMMAND}"\n' in text
    assert ssh(lab, "rb-bare", f"command -v {standins.REBOOT_COMMAND}").returncode == 0


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lab"), *args], capture_output=True, text=True)


@pytest.mark.lab
def test_scripts_lab_reboots_a_host_and_a_dead_power_helper_is_named_until_up(lab, lab_factory):
    before = boot_id(lab, "rb-bare")
    run = lab_cli("reboot", "rb-bare", "--dir", str(lab.root))
    assert run.returncode == 0 and run.stdout.startswith("rb-bare: rebooting"), run.stderr
    wait_rebooted(lab, "rb-bare", before)
    unknown = lab_cli("reboot", "nope", "--dir", str(lab.root))
    assert unknown.returncode == 1 and "no host 'nope' in this lab" in unknown.stderr
    power.stop_helper(lab.root)
    status = lab_cli("status", "--dir", str(lab.root))
    assert status.returncode == 3 and "power helper: DOWN" in status.stdout
    assert lab_cli("reboot", "rb-bare", "--dir", str(lab.root)).returncode == 1
    refused = ssh(lab, "rb-bare", "reboot")
    assert refused.returncode == 1 and "power helper is not running" in refused.stderr
    lab_factory(SPEC, "reboot")  # up again starts it
    status = lab_cli("status", "--dir", str(lab.root))
    assert status.returncode == 0 and "power helper: up" in status.stdout
