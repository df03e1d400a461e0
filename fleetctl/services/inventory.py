"""Inventory: run the probe on every host over SSH and collect a snapshot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot, report_from_probe
from fleetctl.core.timefmt import utc_iso
from fleetctl.errors import HostError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.fanout import fan_out

PROBE_TIMEOUT_S = 90


def collect_inventory(
    fleet: Fleet,
    hosts: tuple[Host, ...],
    *,
    forks: int = 32,
    accept_new_host_keys: bool = False,
    on_host_done: Callable[[HostReport], None] | None = None,
    pool=None,
    clock: Clock = SYSTEM,
    keep_connections: bool = True,
) -> Snapshot:
    """Probe ``hosts`` in parallel; every host gets a report, failed ones with an error kind and reason.

    The snapshot's ``taken_at`` is when the run began; each report's ``probed_at`` when that host answered.
    ``pool``: a command's SSH pool to probe over (its connections stay open for what the command does next,
    unless ``keep_connections`` is false: then each host's closes as soon as its probe is done)."""
    from contextlib import nullcontext

    from fleetctl.transport.ssh import SshPool

    reports: dict[str, HostReport] = {}
    taken_at = utc_iso(clock.utc_now())
    with nullcontext(pool) if pool is not None else SshPool(fleet.ssh, accept_new=accept_new_host_keys) as pool:
        for host in hosts:  # every route first: a bad ssh_config stops the command before any connection
            pool.target(host)
        work = (lambda h: probe_host(pool, h)) if keep_connections else (lambda h: _probe_and_release(pool, h))
        for host, outcome in fan_out(hosts, work, forks=forks):
            report = outcome if isinstance(outcome, HostReport) else failed_report(host, outcome)
            report = replace(report, probed_at=max(taken_at, utc_iso(clock.utc_now())))
            reports[host.name] = report
            if on_host_done is not None:
                on_host_done(report)
    return Snapshot(taken_at=taken_at, fleet=fleet.name, hosts=tuple(reports[h.name] for h in hosts))


def open_pool(fleet: Fleet, hosts: tuple[Host, ...], *, accept_new_host_keys: bool = False):
    """An SSH pool for ``hosts`` with every route resolved: a bad ssh_config (exit 2) is found before anything
    connects or any progress is shown. Use it as a context manager and pass it to ``collect_inventory``."""
    from fleetctl.transport.ssh import SshPool

    pool = SshPool(fleet.ssh, accept_new=accept_new_host_keys)
    for host in hosts:
        pool.target(host)
    return pool


def _probe_and_release(pool, host: Host) -> HostReport:
    try:
        return probe_host(pool, host)
    finally:
        pool.release(host)


def probe_host(pool, host: Host) -> HostReport:
    from fleetctl.probe import PROBE_COMMAND, probe_payload

    try:
        run = pool.run(host, PROBE_COMMAND, stdin=probe_payload(), timeout_s=PROBE_TIMEOUT_S)
    except HostError as e:
        if e.kind != "disconnected":
            raise
        # the probe only reads: repeat it once, on a new connection
        run = pool.run(host, PROBE_COMMAND, stdin=probe_payload(), timeout_s=PROBE_TIMEOUT_S)
    return report_from_probe(host, run.rc, run.stdout.decode("utf-8", "replace"), run.stderr.decode("utf-8", "replace"))


def failed_report(host: Host, error: HostError) -> HostReport:
    return HostReport(name=host.name, address=host.address, ring=host.ring, error=HostFailure(error.kind, error.reason))
