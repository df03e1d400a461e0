"""The lab's power helper: one process per lab, outside every host, that reboots the hosts that ask.

A lab host's `reboot` (labkit.standins) writes <host dir>/power/request; the helper (started by `scripts/lab
up`, stopped first by `down`) sees it, takes the host down (Lab.power_off: sessions drop, dockerd stops its
containers, the link goes down), waits the host's reboot_s and boots it (Lab.power_on: a new boot id, a pending
driver loaded, link up, dockerd, sshd). Everything it does, it does from the lab's own namespaces, as `up`.

    python3 scripts/labkit/power.py serve LAB_DIR      # what ensure_helper starts (detached)

<host dir>/power/state says "up", "rebooting" or "failed: why"; <lab>/power/power.log has one line per step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by ensure_helper
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "labkit"

from .commands import tool
from .netns import process_alive, terminate
from .preflight import HOST_PYTHON
from .spec import LabError

POLL_S = 0.1
START_TIMEOUT_S = 10.0
HELPER = Path(__file__).resolve()


def helper_dir(root: Path) -> Path:
    return Path(root) / "power"


def pidfile(root: Path) -> Path:
    return helper_dir(root) / "power.pid"


def request_reboot(host_dir: Path) -> None:
    """What the host's `reboot` does: leave a request for the helper."""
    folder = Path(host_dir) / "power"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".request.{os.getpid()}"
    tmp.write_text("reboot\n")
    os.replace(tmp, folder / "request")


def host_state(host_dir: Path) -> str:
    try:
        return (Path(host_dir) / "power" / "state").read_text().strip() or "up"
    except OSError:
        return "up"


def forget_failure(host_dir: Path) -> None:
    """A host that `up` repaired after a failed reboot is up again."""
    if host_state(host_dir).startswith("failed"):
        (Path(host_dir) / "power" / "state").write_text("up\n")


# -- the helper process ---------------------------------------------------------------------------------------


def running_pid(root: Path) -> int | None:
    """The helper's pid if it runs for this lab (its command line names the lab folder)."""
    try:
        pid = int(pidfile(root).read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    ours = str(HELPER).encode() in argv and str(Path(root).absolute()).encode() in argv
    return pid if ours and process_alive(pid) else None


def ensure_helper(root: Path) -> None:
    """Start the lab's power helper unless it runs; it detaches (setsid --fork) and writes its pid file."""
    root = Path(root).absolute()
    if running_pid(root) is not None:
        return
    folder = helper_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    pidfile(root).unlink(missing_ok=True)
    argv = [tool("setsid"), "--fork", HOST_PYTHON, str(HELPER), "serve", str(root)]
    with open(folder / "power.log", "ab") as log:
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"},
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while running_pid(root) is None:
        if time.monotonic() > deadline:
            raise LabError(f"the lab's power helper did not start: see {folder / 'power.log'}")
        time.sleep(0.05)


def stop_helper(root: Path) -> None:
    pid = running_pid(root)
    if pid is not None:
        terminate([pid], 3.0)
    pidfile(root).unlink(missing_ok=True)


def serve(root: Path) -> int:
    """Watch every host's request file until the lab is gone or SIGTERM; reboot each host in its own thread."""
    root = Path(root).absolute()
    pidfile(root).write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    busy: set[str] = set()
    while (root / "state.json").exists():
        for request in sorted(root.glob("hosts/*/power/request")):
            name = request.parent.parent.name
            kind = _take(request)
            if name not in busy and kind == "reboot":
                busy.add(name)
                threading.Thread(target=_reboot, args=(root, name, busy), daemon=True).start()
        time.sleep(POLL_S)
    return 0


def _take(request: Path) -> str:
    try:
        text = request.read_text(errors="replace").strip()
        request.unlink()
    except OSError:
        return ""
    return text


def _reboot(root: Path, name: str, busy: set[str]) -> None:
    from .lab import Lab

    state = root / "hosts" / name / "power" / "state"
    try:
        lab = Lab.open(root)
        delay = lab.spec.host(name).reboot_s
        state.write_text("rebooting\n")
        _log(f"{name}: reboot: going down")
        lab.power_off(name)
        _log(f"{name}: down; back in {delay} s")
        time.sleep(delay)
        lab.power_on(name)
        state.write_text("up\n")
        _log(f"{name}: up")
    except Exception as e:  # one host's failed boot is that host's, and logged: the helper keeps serving
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        state.write_text(f"failed: {first}\n")
        _log(f"{name}: reboot failed: {first}")
    finally:
        busy.discard(name)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        print("usage: power.py serve LAB_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(Path(sys.argv[2])))
