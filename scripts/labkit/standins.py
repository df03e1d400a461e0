"""What a lab host runs instead of the machine's own power tools, sudo and package manager.

Lab hosts share this machine's filesystem and process table, so nothing run on a lab host may reach the
machine's own reboot. Three layers, each enough for the usual commands:
1. PATH: each host's bin folder (first on its sessions' PATH) holds the lab's `reboot`, `shutdown`, `halt`,
   `poweroff`, `systemctl`, `lab-reboot` (one script, by the name it is called as), a `sudo` that runs the
   command as root on the host with the session's PATH (lab sessions are root already; Debian's real sudo
   would reset PATH to its secure_path and find /usr/sbin/reboot), and `lab-driver` (labkit.driver).
2. Mounts: sshd runs in the host's own mount namespace (ip netns exec makes one) where the lab binds its
   script over every one of the machine's power tools that exists (/usr/sbin/reboot, /usr/bin/systemctl, ...),
   its sudo over the machine's sudo, and /dev/null over /proc/sysrq-trigger and init's control sockets: an
   absolute path, or sudo's secure_path, reaches the lab's script too.
3. Capabilities: sshd starts with CAP_SYS_BOOT dropped from its bounding set (setpriv), so no session on a lab
   host can call reboot(2), whatever it runs.

The same mount namespace carries the host's boot id: <host dir>/boot_id is bound over
/proc/sys/kernel/random/boot_id, and each boot (labkit.power) writes a new one and starts a new sshd.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import uuid
from pathlib import Path

from .commands import tool
from .files import REBOOT_COMMAND as REBOOT_COMMAND  # the fleet file names it
from .files import write_if_changed
from .preflight import HOST_PYTHON

POWER_NAMES = ("reboot", "shutdown", "halt", "poweroff", "systemctl", "telinit", "lab-reboot")
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SILENCED = ("/proc/sysrq-trigger", "/run/systemd/private", "/run/dbus/system_bus_socket", "/run/initctl")
BOOT_ID = "/proc/sys/kernel/random/boot_id"

POWER = r"""#!/bin/sh
# The fleetctl lab's reboot, shutdown, halt, poweroff, systemctl and lab-reboot for lab node {name}.
# A reboot is asked of the lab's power helper (labkit/power.py, outside the host): it stops this host and
# brings it back after its reboot_s. Nothing here reaches the machine's own reboot.
HOST_DIR={host_dir}
LAB_ROOT={lab_root}
me=${{0##*/}}
fail() {{ echo "$me: $*" >&2; exit 1; }}
reboot_host() {{
    [ -n "$HOST_DIR" ] || fail "this lab node does not reboot (fleetctl lab)"
    pid=$(cat "$LAB_ROOT/power/power.pid" 2>/dev/null) || pid=
    [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$LAB_ROOT" ||
        fail "the lab's power helper is not running (scripts/lab up starts it): not rebooting"
    mkdir -p "$HOST_DIR/power" && printf 'reboot\n' >"$HOST_DIR/power/.request.$$" &&
        mv -f "$HOST_DIR/power/.request.$$" "$HOST_DIR/power/request" || fail "cannot ask the lab for a reboot"
    exit 0
}}
off() {{ fail "lab hosts only reboot: powering off needs a person (fleetctl lab)"; }}
for a in "$@"; do
    case "$a" in
    --help | --version) echo "$me: the fleetctl lab's stand-in: reboot, shutdown -r now, systemctl reboot"; exit 0 ;;
    esac
done
case "$me" in
reboot | lab-reboot)
    for a in "$@"; do case "$a" in -p | --poweroff | -h | --halt) off ;; esac; done
    reboot_host ;;
halt | poweroff) off ;;
shutdown)
    mode=off when=
    for a in "$@"; do
        case "$a" in
        -r | --reboot) mode=reboot ;;
        -c) fail "no scheduled shutdown to cancel" ;;
        -k) exit 0 ;;
        -*) ;;
        *) [ -n "$when" ] || when=$a ;;
        esac
    done
    [ "$mode" = reboot ] || off
    case "${{when:-+1}}" in now | +0) ;; *) fail "the lab reboots only now (shutdown -r now), not at '${{when:-+1}}'" ;; esac
    reboot_host ;;
systemctl)
    verb=
    for a in "$@"; do case "$a" in -*) ;; *) verb=$a; break ;; esac; done
    case "$verb" in
    reboot) reboot_host ;;
    poweroff | halt | kexec | soft-reboot | suspend | hibernate) off ;;
    *) fail "systemctl ${{verb:-without a verb}}: not on a lab host (the lab stands in only for reboot)" ;;
    esac ;;
telinit) [ "${{1-}}" = 6 ] && reboot_host; off ;;
*) fail "unknown power command (fleetctl lab)" ;;
esac
"""

SUDO = r"""#!/bin/sh
# sudo, as the fleetctl lab has it: lab sessions are root already, so this runs COMMAND as root on this lab host
# and keeps the session's PATH (the lab's reboot, shutdown and systemctl stay first). Debian's sudo would reset
# PATH to its secure_path.
while [ $# -gt 0 ]; do
    case "$1" in
    -n | -E | -H | -k | -S | --non-interactive | --preserve-env | --set-home | --reset-timestamp | --stdin) shift ;;
    -u | --user) case "${2-}" in root | 0 | '#0') shift 2 ;; *) echo "sudo: lab hosts know only root" >&2; exit 1 ;; esac ;;
    --) shift; break ;;
    -*) echo "sudo: $1: not supported on a lab host (fleetctl lab)" >&2; exit 1 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: sudo [-n] [-E] [-H] [-u root] [--] COMMAND [ARG ...]" >&2; exit 1; }
command -v "$1" >/dev/null 2>&1 || { echo "sudo: $1: command not found" >&2; exit 1; }
exec "$@"
"""

LAB_DRIVER = """#!{python}
# lab-driver for lab host {name}: installs a fake NVIDIA driver or Fabric Manager (see labkit/driver.py).
import json, sys
sys.path.insert(0, {scripts!r})
from labkit.driver import main
spec = json.load(open({state!r}))["spec"]
raw = next(h for h in spec["hosts"] if h["name"] == {name!r})
sys.exit(main(sys.argv[1:], {host_dir!r}, raw))
"""


def power_script(name: str, host_dir: Path | None, lab_root: Path) -> str:
    """The power stand-in for one node; host_dir None (the bastion): it refuses everything."""
    return POWER.format(
        name=name, host_dir=shlex.quote(str(host_dir) if host_dir else ""), lab_root=shlex.quote(str(lab_root))
    )


def driver_script(name: str, host_dir: Path, lab_root: Path, python: str) -> str:
    scripts = str(Path(__file__).resolve().parent.parent)
    return LAB_DRIVER.format(
        python=python, name=name, scripts=scripts, state=str(lab_root / "state.json"), host_dir=str(host_dir)
    )


def scripts(name: str, host_dir: Path | None, lab_root: Path, python: str) -> dict[str, str]:
    """File name in the node's bin folder → text (power names are copies of one script: $0 picks)."""
    power = power_script(name, host_dir, lab_root)
    found = {n: power for n in POWER_NAMES}
    found["sudo"] = SUDO
    if host_dir is not None:
        found["lab-driver"] = driver_script(name, host_dir, lab_root, python)
    return found


def masks(bin_dir: Path) -> list[tuple[str, str]]:
    """(source, target) bind mounts for the node's mount namespace: the lab's scripts over the machine's power
    tools and sudo (each real file once: /usr/sbin/reboot is often a link to systemctl, and the script reads
    the name it is called by), /dev/null over the machine's other ways to reboot."""
    pairs: dict[str, str] = {}
    for folder in SYSTEM_DIRS:
        for name in (*POWER_NAMES, "sudo"):
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if os.path.isfile(real) and real not in pairs and not real.startswith(str(bin_dir) + "/"):
                pairs[real] = str(bin_dir / ("sudo" if name == "sudo" else "reboot"))
    for path in SILENCED:
        if os.path.exists(path):
            pairs[path] = "/dev/null"
    return [(source, target) for target, source in pairs.items()]


def boot_command(hostname: str, boot_id: Path | None, mounts: list[tuple[str, str]], argv: list[str]) -> list[str]:
    """`/bin/sh -c ...`: in the node's new mount and UTS namespaces, set its hostname, bind its boot id and the
    masks, then exec argv (sshd) without CAP_SYS_BOOT. Any step failing stops it: sshd does not start."""
    steps = ['printf %s "$0" > /proc/sys/kernel/hostname']
    if boot_id is not None:
        mounts = [(str(boot_id), BOOT_ID), *mounts]
    steps += [f"mount --bind {shlex.quote(src)} {shlex.quote(dst)}" for src, dst in mounts]
    steps.append(f'exec {shlex.quote(tool("setpriv"))} --bounding-set -sys_boot -- "$@"')
    return ["/bin/sh", "-c", " && ".join(steps), hostname, *argv]


def ensure(name: str, node_dir: Path, is_host: bool, lab_root: Path) -> tuple[Path | None, list[tuple[str, str]], str]:
    """The node's stand-ins in its bin folder, its boot id (made once: only a boot changes it), the bind mounts
    for its mount namespace, and a digest of all that (a change restarts its sshd)."""
    texts = scripts(name, node_dir if is_host else None, lab_root, HOST_PYTHON)
    for file, text in texts.items():
        write_if_changed(node_dir / "bin" / file, text, 0o755)
    boot_id = boot_id_file(node_dir) if is_host else None
    if boot_id is not None and not boot_id.exists():
        new_boot_id(node_dir)
    mounts = masks(node_dir / "bin")
    digest = hashlib.sha256(repr((sorted(texts.items()), mounts)).encode()).hexdigest()[:16]
    return boot_id, mounts, digest


def boot_id_file(host_dir: Path) -> Path:
    return Path(host_dir) / "boot_id"


def new_boot_id(host_dir: Path) -> str:
    """A fresh boot id for the host (its next sshd binds it over /proc/sys/kernel/random/boot_id)."""
    value = str(uuid.uuid4())
    path = boot_id_file(host_dir)
    tmp = path.with_name(".boot_id.tmp")
    tmp.write_text(value + "\n")
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)
    return value
