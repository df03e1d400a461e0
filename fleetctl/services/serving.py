"""Serving: deploy a profile on idle hosts, drain and undrain hosts, under the fleet lock.

Order of work, so that nothing is left half-done by accident:
- drain records the intent first (state: drained), then makes the router match it and verifies, then waits for
  in-flight requests; a crash in between leaves a host recorded drained, which ``router sync`` and rollouts honour.
- undrain brings the container up and healthy first, then clears the record and syncs the router.
- deploy adds a host to the router only once it is healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from fleetctl.core.compat.profile import Profile
from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.fleetstate import DrainRecord, FleetState, ServingRecord, url_port, worker_url
from fleetctl.core.metrics import IN_FLIGHT, in_flight
from fleetctl.core.router import RouterDiff
from fleetctl.core.serve import ContainerSpec, EnvMissing, ServeSettings, container_spec
from fleetctl.core.timefmt import utc_iso
from fleetctl.errors import HostError, HostsFailed, UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.fanout import fan_out
from fleetctl.services.poll import DRAIN, MODEL, poll
from fleetctl.services.router import sync_router
from fleetctl.services.statefile import load_state, update_state
from fleetctl.services.worker_key import fleet_worker_key

if TYPE_CHECKING:
    from fleetctl.services.rollout_ports import HostPort
    from fleetctl.services.runtime import HostRuntime
    from fleetctl.transport.ssh import SshPool
    from fleetctl.transport.vllm import VllmClient

Event = Callable[[dict[str, Any]], None]


def now(clock: Clock = SYSTEM) -> str:
    return utc_iso(clock.utc_now())


def new_revision(clock: Clock = SYSTEM) -> str:
    return clock.utc_now().strftime("r%Y%m%d%H%M%S")


@dataclass(frozen=True)
class HostOutcome:
    host: str
    ok: bool
    detail: str


def serve_settings(profile: Profile) -> ServeSettings:
    if profile.serve is None:
        raise UsageError(f"profile {profile.name} has no [serve] table: nothing to run", hint=profile.path)
    return profile.serve


def spec_for(
    profile: Profile,
    environ: Mapping[str, str],
    revision: str,
    image: str | None = None,
    worker_key: str | None = None,
) -> ContainerSpec:
    serve = serve_settings(profile)
    try:
        return container_spec(profile.name, image or profile.image, serve, revision, environ, worker_key)
    except EnvMissing as e:
        raise UsageError(str(e)) from e


class HostOps:
    """What serving does on one host: its runtime over the command's SSH pool, and its vLLM over HTTP."""

    def __init__(self, pool: SshPool, host: Host, clock: Clock = SYSTEM, worker_key: str | None = None) -> None:
        self.pool, self.host, self.clock, self.worker_key = pool, host, clock, worker_key
        self._runtime: HostRuntime | None = None

    @property
    def runtime(self) -> HostRuntime:
        if self._runtime is None:
            from fleetctl.services.runtime import HostRuntime
            from fleetctl.transport.docker import docker_client

            self._runtime = HostRuntime(self.host.name, docker_client(self.pool.client(self.host), self.host.name))
        return self._runtime

    def vllm(self, port: int) -> VllmClient:
        from fleetctl.transport.vllm import VllmClient

        return VllmClient(self.host.name, worker_url(self.host.address, port), api_key=self.worker_key)

    def wait_healthy(self, model: str, port: int, timeout_s: float) -> float:
        from fleetctl.services.health import wait_healthy

        def running() -> bool:
            current = self.runtime.current()
            return current is not None and current.running

        client = self.vllm(port)
        try:
            return wait_healthy(client, model, timeout_s, still_running=running, clock=self.clock)
        finally:
            client.close()

    def in_flight(self, port: int) -> tuple[float, float]:
        client = self.vllm(port)
        try:
            return in_flight(client.metrics(IN_FLIGHT))
        finally:
            client.close()


def deploy_host(ops: HostOps, spec: ContainerSpec, profile: Profile, on_event: Event) -> ServingRecord:
    """Pull, start and wait healthy on a host that runs nothing of ours yet."""
    serve = serve_settings(profile)
    existing = ops.runtime.current()
    if existing is not None:
        raise HostError(
            ops.host.name,
            "already_serving",
            f"already runs {existing.image} (profile {existing.profile or '?'})",
            hint="use fleetctl upgrade to change it",
        )
    on_event({"event": "pull", "host": ops.host.name, "image": spec.image})
    ops.runtime.ensure_image(spec.image)
    on_event({"event": "start", "host": ops.host.name, "image": spec.image})
    ops.runtime.create(spec)
    try:
        seconds = ops.wait_healthy(serve.served_name, serve.port, serve.health_timeout_s)
    except HostError:
        ops.runtime.stop(timeout_s=10)  # never healthy: stopped, kept for its logs, not in the router
        raise
    on_event({"event": "healthy", "host": ops.host.name, "seconds": round(seconds, 2)})
    return ServingRecord(
        host=ops.host.name,
        url=worker_url(ops.host.address, serve.port),
        profile=profile.name,
        image=spec.image,
        revision=spec.labels["fleetctl.revision"],
        since=now(),
        model=serve.served_name,
    )


def deploy(
    fleet: Fleet, profile: Profile, hosts: tuple[Host, ...], *, environ: Mapping[str, str], forks: int, on_event: Event
) -> list[HostOutcome]:
    from fleetctl.transport.ssh import SshPool

    key = fleet_worker_key(fleet)
    spec = spec_for(profile, environ, new_revision(), worker_key=key)
    outcomes: list[HostOutcome] = []
    with SshPool(fleet.ssh) as pool:
        for host, result in fan_out(
            hosts, lambda h: deploy_host(HostOps(pool, h, worker_key=key), spec, profile, on_event), forks=forks
        ):
            if isinstance(result, HostError):
                outcomes.append(HostOutcome(host.name, False, f"{result.kind}: {result.reason}"))
                continue
            update_state(fleet, partial(FleetState.with_serving, record=result))
            outcomes.append(HostOutcome(host.name, True, f"{spec.image} healthy"))
    if any(o.ok for o in outcomes):
        ledger = FleetLedger(fleet)
        diff = ledger.sync_router()
        on_event({"event": "router", "added": list(diff.add), "removed": list(diff.remove)})
        ledger.follow_capacity(on_event)
    return outcomes


def check_min_serving(fleet: Fleet, state: FleetState, names: list[str], force: bool) -> int:
    """How many hosts would still serve after draining ``names``; UsageError when a pool would go below its
    ``min_serving`` (a fleet without pools: ``[router] min_serving``)."""
    from fleetctl.core.pools import check_pools_min_serving

    return check_pools_min_serving(fleet, state, names, force=force)


# -- drain and undrain: one sequence for `fleetctl drain`/`undrain` and the rollout executor ------------------------


class Ledger(Protocol):
    """Where drains are recorded and what the router is made to match: ``FleetLedger`` for the commands, the
    rollout's ``RolloutPorts`` for the executor (``fleetctl.services.rollout_ports``)."""

    def update_state(self, change: Callable[[FleetState], FleetState]) -> FleetState: ...

    def sync_router(self) -> RouterDiff: ...

    def follow_capacity(self, on_event: Event) -> None:
        """The front door's capacity follows what the router now serves (nothing without a door)."""
        ...


class FleetLedger:
    """``state.json`` and the local vllm-router of one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def update_state(self, change: Callable[[FleetState], FleetState]) -> FleetState:
        return update_state(self.fleet, change)

    def sync_router(self) -> RouterDiff:
        return sync_router(self.fleet, load_state(self.fleet))

    def follow_capacity(self, on_event: Event) -> None:
        follow_capacity(self.fleet, on_event)


@dataclass(frozen=True)
class DrainTarget:
    """One host to drain: its operations, the port its vLLM listens on now, and the record that says why."""

    ops: HostPort
    port: int
    record: DrainRecord


@dataclass(frozen=True)
class DrainOptions:
    timeout_s: float  # for in-flight requests to finish, per host
    stop: bool = False  # stop the container once drained (`drain --stop`)
    keep_existing: bool = False  # a host already drained keeps its record (a resumed rollout re-drains)
    skip_stopped: bool = False  # a host whose container is not running has nothing in flight: no wait
    announce_router: bool = True  # an {"event": "router"} with what the sync changed


def drain_hosts(
    ledger: Ledger, targets: list[DrainTarget], options: DrainOptions, on_event: Event
) -> list[tuple[Host, str | HostError]]:
    """Record the hosts drained in state.json, make the router match (verified), then wait, in parallel, until each
    vLLM has nothing running or waiting. Each host's result is what happened or its HostError; a router that
    does not take the change raises RouterError before any wait. Repeatable."""
    ledger.update_state(lambda s: _with_drained(s, [t.record for t in targets], options.keep_existing))
    diff = ledger.sync_router()
    if options.announce_router:
        on_event({"event": "router", "removed": list(diff.remove), "added": list(diff.add)})
    ledger.follow_capacity(on_event)
    by_name = {t.ops.host.name: t for t in targets}

    def wait(host: Host) -> str:
        target = by_name[host.name]
        if options.skip_stopped and not _running(target.ops):
            return "not running"
        return quiesce(target.ops, target.port, options.timeout_s, options.stop, on_event)

    return list(fan_out([t.ops.host for t in targets], wait, forks=len(targets)))


def undrain_hosts(
    ledger: Ledger,
    names: list[str],
    on_event: Event,
    *,
    serving: Mapping[str, ServingRecord] | None = None,
    announce_router: bool = True,
) -> RouterDiff:
    """The reverse, once the hosts are healthy again: clear their drain records (recording what each serves now,
    where ``serving`` says), then make the router match (verified). Repeatable."""
    now_serving = serving or {}

    def change(state: FleetState) -> FleetState:
        for name in names:
            state = state.without_drained(name)
            state = state.with_serving(now_serving[name]) if name in now_serving else state
        return state

    ledger.update_state(change)
    diff = ledger.sync_router()
    if announce_router:
        on_event({"event": "router", "added": list(diff.add), "removed": list(diff.remove)})
    ledger.follow_capacity(on_event)
    return diff


def follow_capacity(fleet: Fleet, on_event: Event) -> None:
    """The front door's capacity follows the hosts that serve now; a door that cannot take it is said, never
    the drain's failure (the door keeps its previous capacity, and vllm-router still routes correctly)."""
    if fleet.router.door is None:
        return
    import os

    from fleetctl.errors import FleetError
    from fleetctl.services.door import door_capacity

    try:
        slots = door_capacity(fleet, load_state(fleet), os.environ)
    except (FleetError, OSError) as e:
        on_event({"event": "door", "error": f"capacity not updated: {e}"})
        return
    if slots is not None:
        on_event({"event": "door", "slots": slots})


def drain(
    fleet: Fleet,
    hosts: tuple[Host, ...],
    *,
    reason: str,
    by: str,
    timeout_s: float,
    stop: bool,
    force: bool,
    on_event: Event,
) -> list[HostOutcome]:
    """Out of the router (verified), then wait until vLLM has nothing running or waiting; optionally stop."""
    from fleetctl.transport.ssh import SshPool

    names = [h.name for h in hosts]
    state = load_state(fleet)
    _refuse_unknown(state, names)
    check_min_serving(fleet, state, names, force)
    stamp = now()
    with SshPool(fleet.ssh) as pool:
        targets = [
            DrainTarget(
                HostOps(pool, h, worker_key=fleet_worker_key(fleet)),
                url_port(state.serving[h.name].url),
                DrainRecord(h.name, reason, by, stamp),
            )
            for h in hosts
        ]
        results = drain_hosts(FleetLedger(fleet), targets, DrainOptions(timeout_s, stop=stop), on_event)
    return [_outcome(h, r) for h, r in results]


def _refuse_unknown(state: FleetState, names: list[str]) -> None:
    unknown = [n for n in names if n not in state.serving]
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: not serving anything fleetctl deployed (see fleetctl status)")


def _outcome(host: Host, result: str | HostError) -> HostOutcome:
    if isinstance(result, HostError):
        return HostOutcome(host.name, False, result.reason)
    return HostOutcome(host.name, True, result)


def _with_drained(state: FleetState, records: list[DrainRecord], keep_existing: bool) -> FleetState:
    for record in records:
        if not (keep_existing and state.is_drained(record.host)):
            state = state.with_drained(record)
    return state


def _running(ops: HostPort) -> bool:
    current = ops.runtime.current()
    return current is not None and current.running


def quiesce(ops: HostPort, port: int, timeout_s: float, stop: bool, on_event: Event) -> str:
    """Wait until vLLM on the host has nothing running or waiting (already out of the router), then maybe stop."""
    counts: list[tuple[float, float] | None] = [None]

    def drained() -> bool | None:
        counts[0] = _in_flight_or_none(ops, port, on_event)
        return True if counts[0] is not None and not any(counts[0]) else None

    if poll(drained, timeout_s, DRAIN, ops.clock) is None:
        last = counts[0]
        still = (
            "vLLM too busy to answer /metrics"
            if last is None
            else f"still {last[0]:g} running and {last[1]:g} waiting requests"
        )
        raise HostError(
            ops.host.name, "drain_timeout", f"{still} after {timeout_s:g}s; the host stays out of the router"
        )
    on_event({"event": "drained", "host": ops.host.name})
    if stop:
        ops.runtime.stop(timeout_s=40)
        on_event({"event": "stopped", "host": ops.host.name})
        return "drained and stopped"
    return "drained"


def _in_flight_or_none(ops: HostPort, port: int, on_event: Event) -> tuple[float, float] | None:
    """In-flight requests; a vLLM that does not answer at all has none left to wait for; one that is only slow
    to answer (a timeout) may still be serving: None, so the caller asks again."""
    try:
        return ops.in_flight(port)
    except HostError as e:
        if e.kind == "vllm_slow":
            on_event({"event": "slow_metrics", "host": ops.host.name, "detail": e.reason})
            return None
        if e.kind != "vllm_unreachable":
            raise
        on_event({"event": "not_answering", "host": ops.host.name, "detail": e.reason})
        return 0.0, 0.0


def undrain(fleet: Fleet, hosts: tuple[Host, ...], *, timeout_s: float, on_event: Event) -> list[HostOutcome]:
    """Start the container if stopped, wait healthy; then clear the drain records of the hosts that came back and
    put them back in the router."""
    from fleetctl.transport.ssh import SshPool

    state = load_state(fleet)
    _refuse_unknown(state, [h.name for h in hosts])
    with SshPool(fleet.ssh) as pool:

        def back(host: Host) -> str:
            ops, record = HostOps(pool, host, worker_key=fleet_worker_key(fleet)), state.serving[host.name]
            ops.runtime.start()
            model = record.model or _model_of(ops, record, timeout_s)
            ops.wait_healthy(model, url_port(record.url), timeout_s)
            return "healthy"

        outcomes = [_outcome(host, result) for host, result in fan_out(hosts, back, forks=len(hosts))]
    undrain_hosts(FleetLedger(fleet), [o.host for o in outcomes if o.ok], on_event)
    return outcomes


def _model_of(ops: HostOps, record: ServingRecord, timeout_s: float) -> str:
    """The model the host serves, as its /v1/models lists it (the container may be just starting: retried)."""
    client = ops.vllm(url_port(record.url))

    def listed() -> str | None:
        try:
            models = client.models()
        except HostError:
            return None
        return models[0] if models else None

    try:
        model = poll(listed, timeout_s, MODEL, ops.clock)
    finally:
        client.close()
    if model is None:
        raise HostError(ops.host.name, "unhealthy", f"not healthy after {timeout_s:g}s: no model listed")
    return model


def raise_if_failed(outcomes: list[HostOutcome], verb: str) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise HostsFailed(
            f"{verb} failed on {len(failed)} of {len(outcomes)} host(s): "
            + "; ".join(f"{o.host}: {o.detail}" for o in failed)
        )
