"""One real dockerd per lab host, started with nsenter in the host's network namespace, all its state in one folder.

    files = DockerdFiles(host_dir / "docker")
    ensure(files, "fl-gpu-01", hook_dir=host_dir / "bin")   # (re)start it if it is not running as described
    wait_ready(files, "fl-gpu-01", deadline)                # until `docker -H unix://<socket> version` answers
    stop(files, "fl-gpu-01")                                # TERM, wait, KILL; then leftover processes and mounts

`nsenter --net`, not `ip netns exec`: the latter remounts /sys, hides the cgroup mounts and dockerd dies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .commands import SYSTEM_PATH, system_tool, tool
from .files import write_if_changed
from .netns import process_alive, terminate
from .spec import LabError

SOCKET_PATH_MAX = 107  # sun_path, less its closing NUL
LONGEST_SOCKET = "exec/containerd/containerd.sock.ttrpc"  # the deepest socket dockerd makes in its folder
STOP_GRACE_S = 20.0  # dockerd stops its containers first (their stop timeout, 10 s by default)
LEFTOVER_GRACE_S = 3.0
CLI_TIMEOUT_S = 120
CONTAINERD_NAMESPACE = "moby"  # the containerd namespace dockerd keeps its containers in
SHIM_SOCKETS = Path("/run/containerd/s")


@dataclass(frozen=True)
class DockerdFiles:
    """Where one host's dockerd keeps its things: socket, data root, exec root, pid file, log, config."""

    dir: Path

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def host(self) -> str:
        """The DOCKER_HOST value that reaches this daemon."""
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.dir / "docker.pid"

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def config(self) -> Path:
        return self.dir / "daemon.json"

    @property
    def launch(self) -> Path:
        """How the running daemon was started (argv and environment): a change means a restart."""
        return self.dir / "launch.json"


def daemon_config(files: DockerdFiles) -> dict:
    """daemon.json: our own, so /etc/docker/daemon.json cannot leak in. dockerd 20.10 takes its ID from this key
    (default /etc/docker/key.json, shared by every daemon); newer ones ignore the setting and keep one per data root."""
    return {"deprecated-key-path": str(files.dir / "key.json")}


def launch_argv(files: DockerdFiles, namespace: str) -> list[str]:
    return [
        tool("setsid"),
        "--fork",
        tool("nsenter"),
        f"--net=/run/netns/{namespace}",
        system_tool("dockerd"),
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "-H",
        files.host,
        "--data-root",
        str(files.data_root),
        "--exec-root",
        str(files.exec_root),
        "--pidfile",
        str(files.pidfile),
        "--config-file",
        str(files.config),
    ]


def launch_env(hook_dir: Path | None) -> dict[str, str]:
    """dockerd registers its nvidia device driver (`--gpus`) only if nvidia-container-runtime-hook is on its PATH."""
    path = f"{hook_dir}:{SYSTEM_PATH}" if hook_dir else SYSTEM_PATH
    return {"PATH": path, "LANG": "C"}


def ensure(files: DockerdFiles, namespace: str, hook_dir: Path | None) -> bool:
    """Start the daemon unless it already runs as described; True if it was (re)started. Does not wait."""
    check_socket_room(files)
    files.dir.mkdir(parents=True, exist_ok=True)
    _write(files.config, json.dumps(daemon_config(files), indent=2) + "\n")
    argv, env = launch_argv(files, namespace), launch_env(hook_dir)
    changed = _write(files.launch, json.dumps({"argv": argv, "env": env}, indent=2) + "\n")
    if not changed and running_pid(files, namespace) is not None:
        return False
    stop(files, namespace)
    start(files, argv, env)
    return True


def check_socket_room(files: DockerdFiles) -> None:
    deepest = files.dir / LONGEST_SOCKET
    if len(str(deepest)) > SOCKET_PATH_MAX:
        raise LabError(
            f"{files.dir}: path too long for dockerd's sockets ({deepest} has {len(str(deepest))} "
            f"characters, at most {SOCKET_PATH_MAX}); use a shorter lab folder"
        )


def start(files: DockerdFiles, argv: list[str], env: dict[str, str]) -> None:
    """Start dockerd detached (setsid --fork: it outlives the caller), logging to its log file."""
    files.pidfile.unlink(missing_ok=True)
    with open(files.log, "ab") as log:
        run = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, timeout=30)
    if run.returncode != 0:
        raise LabError(f"dockerd did not start ({' '.join(argv[:4])}...): exit {run.returncode}, see {files.log}")


def running_pid(files: DockerdFiles, namespace: str) -> int | None:
    """The pid of this folder's dockerd if it runs inside this namespace."""
    try:
        pid = int(files.pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        same_ns = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{namespace}").st_ino
    except (OSError, ValueError, IndexError):
        return None
    ours = str(files.pidfile).encode() in cmdline and process_alive(pid)
    return pid if same_ns and ours else None


def ping(files: DockerdFiles, timeout_s: float = 2.0) -> bool:
    """True if the daemon answers `GET /_ping` on its socket (stdlib: cheaper than running the CLI in a loop)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(files.socket))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0].split()
    except OSError:
        return False
    return len(status) >= 2 and status[1] == b"200"


def wait_ready(files: DockerdFiles, namespace: str, deadline: float) -> None:
    """Wait until the daemon answers its ping, then `docker version` (client and server) as a last check."""
    seen_pid = None
    while not ping(files):
        pid = running_pid(files, namespace)
        if seen_pid is not None and pid is None:
            raise LabError(f"dockerd in {namespace} exited: {log_tail(files) or 'see ' + str(files.log)}")
        seen_pid = pid or seen_pid
        if time.monotonic() > deadline:
            raise LabError(f"dockerd in {namespace} did not answer on {files.socket}: {log_tail(files) or 'no log'}")
        time.sleep(0.1)
    version = cli(files, "version", "--format", "{{.Server.Version}}")
    if version.returncode != 0:
        raise LabError(f"docker -H {files.host} version: {version.stderr.strip()}")


def cli(files: DockerdFiles, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Debian's docker CLI against this daemon; never raises on a non-zero exit."""
    env = {"PATH": SYSTEM_PATH, "LANG": "C", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [system_tool("docker"), "-H", files.host, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout_s,
    )


def stop(files: DockerdFiles, namespace: str, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the daemon (it stops its containers), KILL it after grace_s, then whatever it left: containerd and
    shims, container processes, mounts under its folder."""
    pid = running_pid(files, namespace)
    if pid is not None:
        terminate([pid], grace_s)
    terminate(leftover_pids(files), LEFTOVER_GRACE_S)
    remove_shim_sockets(files)
    unmount_under(files.dir)
    if not mounts_under(files.exec_root):
        # Runtime state only (a tmpfs on a real host): a killed containerd's pid file there would make the next
        # dockerd wait for that (possibly not yet reaped) process instead of starting its own.
        shutil.rmtree(files.exec_root, ignore_errors=True)
    files.pidfile.unlink(missing_ok=True)
    files.socket.unlink(missing_ok=True)


def leftover_pids(files: DockerdFiles) -> list[int]:
    """Processes of this daemon: those naming its folder (dockerd, containerd, shims) and all their descendants
    (the containers' processes, whatever their namespaces)."""
    prefix = f"{files.dir}/".encode()
    parents: dict[int, int] = {}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if prefix in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def remove_shim_sockets(files: DockerdFiles) -> None:
    """containerd 1.6 puts each shim's socket in /run/containerd/s/<sha256 of address/namespace/id>; a shim that
    was killed leaves it there."""
    address = files.exec_root / "containerd" / "containerd.sock"
    for container in (files.data_root / "containers").glob("*"):
        name = hashlib.sha256(str(address / CONTAINERD_NAMESPACE / container.name).encode()).hexdigest()
        (SHIM_SOCKETS / name).unlink(missing_ok=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def unmount_under(path: Path) -> None:
    """Unmount everything left below path (container rootfs, netns bind mounts), deepest first."""
    for point in mounts_under(path):
        if subprocess.run([tool("umount"), point], capture_output=True).returncode != 0:
            subprocess.run([tool("umount"), "-l", point], capture_output=True)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def log_tail(files: DockerdFiles, lines: int = 1) -> str:
    try:
        found = [line for line in files.log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(found[-lines:])


def _write(path: Path, text: str) -> bool:
    return write_if_changed(path, text, 0o600)
