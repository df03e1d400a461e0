"""One real OpenSSH sshd per lab node: its host key, its config, and starting, checking and stopping it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import standins
from .commands import SBIN_PATH, find, tool
from .netns import process_alive
from .spec import LabError

PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class SshdFiles:
    """Where one node's sshd keeps its things (all under the node's folder)."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"


def keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at path (+ .pub), made once: an existing key is kept."""
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run = subprocess.run(
        [tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise LabError(f"ssh-keygen for {path} failed: {run.stderr.strip()}")


def public_key(path: Path) -> str:
    """ "ssh-ed25519 AAAA..." of a key pair, without the comment."""
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def render_config(
    files: SshdFiles, address: str, authorized_keys: Path, env: dict[str, str], extra: tuple[str, ...] = ()
) -> str:
    """sshd_config text. `env` becomes SetEnv: every session on this node sees it."""
    setenv = " ".join(f'"{k}={v}"' for k, v in env.items())
    lines = [
        "# Written by scripts/lab: one lab node's sshd (started in its network namespace).",
        f"ListenAddress {address}:22",
        f"HostKey {files.host_key}",
        f"PidFile {files.pidfile}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "StrictModes no",  # the lab folder may sit under /tmp, which StrictModes refuses
        "MaxStartups 100",
        "MaxSessions 100",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        f"SetEnv {setenv}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def running_pid(files: SshdFiles, namespace: str) -> int | None:
    """The pid of this node's sshd listener if it runs with this config inside this namespace."""
    try:
        pid = int(files.pidfile.read_text().split()[0])
        # sshd rewrites its title ("sshd: /usr/sbin/sshd -f CONFIG ... [listener] ..."), so match words.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        same_ns = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{namespace}").st_ino
    except (OSError, ValueError, IndexError):
        return None
    return pid if same_ns and str(files.config).encode() in cmdline else None


def start(
    files: SshdFiles, namespace: str, hostname: str, boot_id: Path | None = None, mounts: Sequence[tuple[str, str]] = ()
) -> None:
    """Start sshd inside the namespace, in its own mount and UTS namespaces (`ip netns exec` makes the mount
    one): sessions see `hostname` as the node's name, `boot_id` at /proc/sys/kernel/random/boot_id and the
    lab's stand-ins bound over the machine's power tools (labkit.standins); sshd runs without CAP_SYS_BOOT.

    sshd daemonizes and writes its pid file once it listens."""
    binary = find("sshd")
    if binary is None:
        raise LabError("sshd not found: install the Debian package openssh-server")
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    files.pidfile.unlink(missing_ok=True)
    boot = standins.boot_command(
        hostname, boot_id, list(mounts), [binary, "-f", str(files.config), "-E", str(files.log)]
    )
    cmd = [tool("ip"), "netns", "exec", namespace, tool("unshare"), "--uts", "--", *boot]
    run = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={"PATH": SBIN_PATH, "LANG": "C"},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if run.returncode != 0:
        raise LabError(f"sshd in {namespace} did not start: {run.stderr.strip() or _log_tail(files)}")


def wait_ready(files: SshdFiles, namespace: str, deadline: float) -> None:
    while running_pid(files, namespace) is None:
        if time.monotonic() > deadline:
            raise LabError(f"sshd in {namespace} did not come up: {_log_tail(files) or 'no pid file'}")
        time.sleep(0.02)


def stop(files: SshdFiles, namespace: str, grace_s: float = 3.0) -> None:
    """Stop this node's sshd listener (sessions already open keep running, as on a real host)."""
    pid = running_pid(files, namespace)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    files.pidfile.unlink(missing_ok=True)


def _log_tail(files: SshdFiles) -> str:
    try:
        lines = files.log.read_text().strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
