"""Processes fleetctl starts for the router (vllm-router and its supervisor): is a recorded one still that
process, and how to stop it.

A pid alone is not trusted: the start time read from ``/proc`` must match, so a pid reused by another process is
never taken for ours, and the process's command line must end with the recorded arguments, so a hand-edited record
never gets another process signalled.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.poll import PROCESS_EXIT, poll

ROUTER_PROGRAM = "vllm-router"
ROUTER_TITLE = "vllm::router"  # vllm_router.launch_router sets this process title, overwriting its argv
STOP_TIMEOUT_S = 10.0


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    if fields[0] == "Z":
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: init reaps it


def alive(record: dict[str, Any]) -> bool:
    """The recorded process still runs: the same pid with the same start time."""
    pid, ticks = record.get("pid"), record.get("start_ticks")
    return type(pid) is int and pid > 1 and type(ticks) is int and start_ticks(pid) == ticks


def command_line(pid: int) -> list[str] | None:
    """The process's arguments (/proc/PID/cmdline); None when they cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]]


def runs_recorded_args(record: dict[str, Any]) -> bool:
    """The live process runs the command fleetctl started: its command line ends with the recorded argv (a
    script's interpreter comes first when vllm-router is a Python entry point), or, when the recorded program
    is vllm-router, reads as the title vllm-router gives itself once started (it overwrites its argv with
    ``setproctitle("vllm::router")``)."""
    args = record.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return False
    cmdline = command_line(record["pid"])
    if cmdline is None:
        return False
    if cmdline[-len(args) :] == args:
        return True
    return os.path.basename(args[0]) == ROUTER_PROGRAM and " ".join(cmdline).strip() == ROUTER_TITLE


def ours(record: dict[str, Any] | None) -> bool:
    """The record names a live process that is the router fleetctl started (pid, start time, command line)."""
    return record is not None and alive(record) and runs_recorded_args(record)


def terminate(pid: int, ticks: int | None, wait_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, wait up to ``wait_s``, then SIGKILL; True when it had to be killed."""
    if _signal_and_wait(pid, ticks, signal.SIGTERM, wait_s):
        return False
    _signal_and_wait(pid, ticks, signal.SIGKILL, 5.0)
    return True


def _signal_and_wait(pid: int, ticks: int | None, sig: int, wait_s: float, clock: Clock = SYSTEM) -> bool:
    """True once that process (pid and start time) is gone."""

    def gone() -> bool:
        return ticks is None or start_ticks(pid) != ticks

    if gone():
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    return poll(lambda: True if gone() else None, wait_s, PROCESS_EXIT, clock) is not None
