"""Make vllm-router's workers the fleet's intended set: diff on (url, model) in multi-model mode, apply in a safe
order, verify; one sync at a time; wait (bounded) for a router its supervisor is restarting."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState
from fleetctl.core.router import (
    Mode,
    RouterDiff,
    RouterWorker,
    describe_mismatch,
    intended_workers,
    needed_mode,
    normalise_url,
    plan_sync,
    sync_steps,
)
from fleetctl.errors import RouterError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.lock import taking_turns
from fleetctl.services.poll import ROUTER_START, poll
from fleetctl.services.supervisor import live_status
from fleetctl.transport.router import RouterClient

SYNC_LOCK = "router-sync.lock"
RESTART_WAIT_S = 30.0  # how long drain/undrain/sync wait for a router the supervisor is restarting


def running_mode(fleet: Fleet, state: FleetState) -> Mode:
    """The mode of the router fleetctl supervises; for one started otherwise, the mode the fleet needs."""
    sup = live_status(fleet)
    if sup is not None and sup.get("mode") in ("single", "multi"):
        return "multi" if sup["mode"] == "multi" else "single"
    return needed_mode(fleet, state)


def held_workers(client: RouterClient) -> list[RouterWorker]:
    """What the router holds: with each worker's model in multi-model mode, URLs alone in single mode."""
    if client.mode == "multi":
        return [RouterWorker(w.url, w.model) for w in client.workers()]
    return [RouterWorker(u) for u in client.list_workers()]


def _held_waiting(fleet: Fleet, client: RouterClient, clock: Clock) -> list[RouterWorker]:
    """``held_workers``; while the supervisor is restarting vllm-router, wait for it (RESTART_WAIT_S)."""
    try:
        return held_workers(client)
    except RouterError as first:
        if live_status(fleet) is None:
            raise

        def ask() -> list[RouterWorker] | None:
            try:
                return held_workers(client)
            except RouterError:
                return None

        held = poll(ask, RESTART_WAIT_S, ROUTER_START, clock)
        if held is None:
            raise RouterError(
                fleet.router.url, f"still not answering after {RESTART_WAIT_S:g}s of restart: {first.reason}"
            ) from first
        return held


def sync_router(
    fleet: Fleet,
    state: FleetState,
    *,
    apply: bool = True,
    mode: Mode | None = None,
    wait: bool = True,
    clock: Clock = SYSTEM,
) -> RouterDiff:
    """Make the router's workers the intended set: diff, nothing if equal, apply (a changed model's delete, adds,
    other removes), verify. An add that fails stops the sync before any other removal. With ``wait``, a router
    its supervisor is restarting is waited for (bounded) instead of failing."""
    mode = mode or running_mode(fleet, state)
    intended = intended_workers(state)
    with RouterClient(fleet.router.url, mode=mode) as client:
        if not apply:
            held = _held_waiting(fleet, client, clock) if wait else held_workers(client)
            return plan_sync(held, intended, mode)
        with taking_turns(os.path.join(fleet.state_dir, SYNC_LOCK)):  # two diffs would post one URL twice
            held = _held_waiting(fleet, client, clock) if wait else held_workers(client)
            diff = plan_sync(held, intended, mode)
            if diff.empty:
                return diff
            _apply(client, diff)
            mismatch = describe_mismatch(held_workers(client), intended, mode)
    if mismatch:
        raise RouterError(fleet.router.url, f"does not hold the intended upstreams after sync: {mismatch}")
    return diff


def _apply(client: RouterClient, diff: RouterDiff) -> None:
    steps = sync_steps(diff)
    for _verb, url in (s for s in steps if s[0] == "remove" and normalise_url(s[1]) in diff.replaced):
        client.remove_worker(url)
    _apply_adds(client, diff)
    for _verb, url in (s for s in steps if s[0] == "remove" and normalise_url(s[1]) not in diff.replaced):
        client.remove_worker(url)  # False: another sync removed it first, which is as good


def _apply_adds(client: RouterClient, diff: RouterDiff) -> None:
    """Every add at once: in single mode each answers only once the router saw that worker healthy (up to 10 s),
    so one dead host does not delay the others."""

    def add(url: str) -> str | None:
        try:
            with RouterClient(client.url, mode=client.mode) as own:  # a requests.Session per thread
                own.add_worker(url, diff.model_of(url))
            return None
        except RouterError as e:
            return f"{url} ({e.reason})"

    if not diff.add:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(diff.add))) as pool:
        failed = [f for f in pool.map(add, diff.add) if f]
    if failed:
        raise RouterError(
            client.url,
            f"refused to add {'; '.join(failed)}; nothing was removed",
            hint="check that the host serves /health (fleetctl status), then sync again",
        )
