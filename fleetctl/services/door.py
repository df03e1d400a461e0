"""The front door's services: ``door_up``, ``door_down``, ``door_reload``, ``door_status``, ``door_capacity``.

Files live in the state folder's ``door/`` (configuration, pidfile, stats socket, key maps, log). Every change is
written atomically and checked with ``haproxy -c`` before HAProxy sees it; a running door reloads without
dropping a connection. The fleet's capacity (HAProxy's ``maxconn`` towards vllm-router) is the sum of the serving,
not drained hosts' slots; ``door_capacity`` sets it at run time after a drain or a return, and writes it down so
the next reload keeps it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleetctl.core.door import ClientKey, DoorSettings, client_lines, fleet_slots, parse_keys
from fleetctl.core.door_config import (
    ROUTER_BACKEND,
    ROUTER_SERVER,
    DoorFiles,
    DoorPlan,
    DoorStats,
    parse_stats,
    render_config,
    render_keys_map,
    render_limits_map,
)
from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState
from fleetctl.errors import ConfigError, UsageError
from fleetctl.services.door_process import DoorError, DoorProcess, ask_socket, check_config, haproxy_env
from fleetctl.services.files import write_atomic
from fleetctl.services.worker_key import worker_key


@dataclass(frozen=True)
class DoorInfo:
    listen: str
    scheme: str
    pid: int | None
    started: bool  # False: it was running and reloaded
    slots: int
    clients: int | None  # None: no keys file, every client is admitted


@dataclass(frozen=True)
class DoorStatus:
    declared: bool
    listen: str | None
    pid: int | None
    stats: DoorStats | None
    problem: str | None = None  # why there are no stats while it runs


def door_files(fleet: Fleet) -> DoorFiles:
    folder = os.path.join(fleet.state_dir, "door")
    return DoorFiles(
        config=os.path.join(folder, "haproxy.cfg"),
        pidfile=os.path.join(folder, "haproxy.pid"),
        socket=os.path.join(folder, "haproxy.sock"),
        keys_map=os.path.join(folder, "keys.map"),
        limits_map=os.path.join(folder, "limits.map"),
    )


def door_process(fleet: Fleet) -> DoorProcess:
    """The door's HAProxy, for a supervisor to start, check, reload and stop."""
    files = door_files(fleet)
    log = os.path.join(os.path.dirname(files.config), "haproxy.log")
    return DoorProcess(files, haproxy_env(worker_key(fleet)), log)


def door_settings_of(fleet: Fleet) -> DoorSettings:
    if fleet.router.door is None:
        raise UsageError(
            "the fleet file declares no front door", hint='add listen = "0.0.0.0:8080" to the [router] table'
        )
    return fleet.router.door


def load_clients(fleet: Fleet, settings: DoorSettings) -> tuple[ClientKey, ...] | None:
    """The keys file's clients (relative to the fleet file's folder), None when the door has no keys file."""
    if settings.keys_file is None:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(fleet.path)), settings.keys_file)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        doc = tomllib.loads(text)
    except OSError as e:
        raise ConfigError(f"cannot read the keys file: {e.strerror}", path=settings.keys_file) from e
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"not a TOML keys file: {str(e).splitlines()[0]}", path=settings.keys_file) from e
    return parse_keys(doc, settings.keys_file, client_lines(text))


def write_door(fleet: Fleet, slots: int) -> DoorPlan:
    """Render the door's files, check them with ``haproxy -c`` as a whole, then put them in place."""
    settings = door_settings_of(fleet).beside(os.path.dirname(os.path.abspath(fleet.path)))
    clients = load_clients(fleet, settings)
    files = door_files(fleet)
    os.makedirs(os.path.dirname(files.config), mode=0o700, exist_ok=True)
    router = urlsplit(fleet.router.url)
    plan = DoorPlan(settings, router.hostname or "127.0.0.1", router.port or 80, slots, files, clients)
    staged = _staged(files)
    _write(DoorPlan(settings, plan.router_host, plan.router_port, slots, staged, clients), staged)
    try:
        check_config(staged.config, haproxy_env(worker_key(fleet)))
    finally:
        os.unlink(staged.config)
    for final, new in ((files.keys_map, staged.keys_map), (files.limits_map, staged.limits_map)):
        os.replace(new, final)
    write_atomic(files.config, render_config(plan).encode(), mode=0o600)
    return plan


def _staged(files: DoorFiles) -> DoorFiles:
    return DoorFiles(
        config=files.config + ".new",
        pidfile=files.pidfile,
        socket=files.socket,
        keys_map=files.keys_map + ".new",
        limits_map=files.limits_map + ".new",
    )


def _write(plan: DoorPlan, files: DoorFiles) -> None:
    clients = plan.clients or ()
    write_atomic(files.keys_map, render_keys_map(clients).encode(), mode=0o600)
    write_atomic(files.limits_map, render_limits_map(clients).encode(), mode=0o600)
    write_atomic(files.config, render_config(plan).encode(), mode=0o600)


def serving_slots(fleet: Fleet, state: FleetState, environ: Mapping[str, str]) -> int:
    """The fleet's capacity now: each serving, not drained host's ``--max-num-seqs`` from its profile."""
    from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs

    dirs = profile_dirs(environ, fleet.path)
    args: dict[str, tuple[str, ...]] = {}
    matrix = None
    for host, record in state.serving.items():
        if state.is_drained(host) or fleet.host(host) is None:
            continue
        try:
            matrix = matrix or load_matrix(dirs)
            serve = load_profile(record.profile, dirs, matrix).serve
            args[host] = tuple(serve.args) if serve is not None else ()
        except ConfigError:
            args[host] = ()  # its profile cannot be read now: vLLM's default
    return fleet_slots(args)


def door_up(fleet: Fleet, state: FleetState, environ: Mapping[str, str]) -> DoorInfo:
    """Start the door, or reload it with the current files when it already runs."""
    return door_start(fleet, state, environ)[1]


def door_start(fleet: Fleet, state: FleetState, environ: Mapping[str, str]) -> tuple[DoorProcess, DoorInfo]:
    """For a supervisor: the door's files written and checked, HAProxy started (or, when one already runs on
    them, reloaded and adopted); the DoorProcess to watch with ``alive()`` and restart with ``start()``."""
    plan = write_door(fleet, serving_slots(fleet, state, environ))
    process = door_process(fleet)
    started = not process.alive()
    if started:
        process.start()
    else:
        process.reload()
    return process, _info(plan, process.pid(), started)


def door_reload(fleet: Fleet, state: FleetState, environ: Mapping[str, str]) -> DoorInfo:
    """Keys, limits or settings changed: new files, checked, and a reload that drops no connection."""
    process = door_process(fleet)
    if not process.alive():
        raise DoorError("the front door is not running", hint="fleetctl door up")
    plan = write_door(fleet, serving_slots(fleet, state, environ))
    process.reload()
    return _info(plan, process.pid(), False)


def door_down(fleet: Fleet) -> bool:
    """Stop the door (in-flight requests finish first); False when it was not running."""
    return door_process(fleet).stop()


def door_capacity(fleet: Fleet, state: FleetState, environ: Mapping[str, str]) -> int | None:
    """Make the door's capacity the serving hosts' slots now (after a drain, an undrain, a sync), at run time
    and on disk; None when no door runs. No reload: queued and in-flight requests stay where they are."""
    process = door_process(fleet)
    if fleet.router.door is None or not process.alive():
        return None
    slots = serving_slots(fleet, state, environ)
    write_door(fleet, slots)
    answer = ask_socket(process.files.socket, f"set maxconn server {ROUTER_BACKEND}/{ROUTER_SERVER} {slots}")
    if answer.strip():
        raise DoorError(f"HAProxy did not take the new capacity: {' '.join(answer.split())[:200]}")
    return slots


def door_status(fleet: Fleet) -> DoorStatus:
    """What ``status`` shows of the door: declared or not, listening address, pid and HAProxy's counters."""
    if fleet.router.door is None:
        return DoorStatus(False, None, None, None)
    files = door_files(fleet)
    process = DoorProcess(files)
    pid = process.pid()
    if pid is None:
        return DoorStatus(True, fleet.router.door.listen, None, None, "not running")
    try:
        return DoorStatus(True, fleet.router.door.listen, pid, parse_stats(ask_socket(files.socket, "show stat")))
    except (OSError, ValueError) as e:
        return DoorStatus(True, fleet.router.door.listen, pid, None, f"stats socket: {e}")


def _info(plan: DoorPlan, pid: int | None, started: bool) -> DoorInfo:
    clients = None if plan.clients is None else len(plan.clients)
    return DoorInfo(plan.settings.listen, plan.settings.scheme, pid, started, plan.slots, clients)
