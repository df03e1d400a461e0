"""Rendering and argument helpers for the serving commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleetctl.cli.safe import text
from fleetctl.errors import HostsFailed, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.cli.context import AppContext
    from fleetctl.core.compat.profile import Profile
    from fleetctl.core.fleet import Fleet, Host
    from fleetctl.services.serving import HostOutcome


def load_profile(app_ctx: AppContext, fleet: Fleet, ref: str) -> Profile:
    from fleetctl.services.profiles import load_matrix, profile_dirs
    from fleetctl.services.profiles import load_profile as load

    dirs = profile_dirs(app_ctx.env, fleet.path)
    return load(ref, dirs, load_matrix(dirs))


def named_hosts(fleet: Fleet, names: list[str]) -> tuple[Host, ...]:
    unknown = [n for n in names if fleet.host(n) is None]
    if unknown:
        raise UsageError(f"no host named {', '.join(unknown)} in fleet {fleet.name}")
    return tuple(host for n in dict.fromkeys(names) if (host := fleet.host(n)) is not None)


def left_alone(console: Console, names: tuple[str, ...]) -> None:
    if names:
        console.print(f"left alone (serving already): {text(', '.join(names))}")


def event_printer(console: Console) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        kind = event.get("step") or event.get("event")
        host, ring = event.get("host"), event.get("ring")
        skip = ("event", "host", "kind", "step", "ring")
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip and v not in ([], None))
        line = f"{f'[{ring}] ' if ring else ''}{f'{host}: ' if host else ''}{kind}{' ' + details if details else ''}"
        console.print(f"[dim]{text(line)}[/dim]")

    return show


def outcomes(console: Console, verb: str, results: list[HostOutcome]) -> None:
    for r in results:
        mark = "[green]✓[/green]" if r.ok else "[red]✗[/red]"
        console.print(f"{mark} {text(r.host)}: {text(r.detail)}")


def drain_plan(
    console: Console, fleet: Fleet, hosts: tuple[Host, ...], timeout: float, stop: bool, force: bool
) -> None:
    from fleetctl.core.fleetstate import intended_upstreams
    from fleetctl.services.serving import check_min_serving
    from fleetctl.services.statefile import load_state

    state = load_state(fleet)
    left = check_min_serving(fleet, state, [h.name for h in hosts], force)
    console.print(f"would drain {text(', '.join(h.name for h in hosts))} (dry run, nothing changed):")
    console.print(f"  1. record the hosts as drained; remove them from the router at {text(fleet.router.url)}; verify")
    console.print(f"  2. wait up to {timeout:g}s until vLLM reports no running and no waiting requests")
    if stop:
        console.print("  3. stop the container gracefully")
    if fleet.pools:
        console.print(f"  serving now: {len(intended_upstreams(state))}, after: {left} (min_serving per pool)")
        return
    console.print(
        f"  serving now: {len(intended_upstreams(state))}, after: {left} (min_serving {fleet.router.min_serving})"
    )


def status_table(console: Console, doc: dict[str, Any]) -> None:
    from rich.table import Table

    router = doc["router"]
    state = "reachable" if router["reachable"] else f"[red]{text(router['error'])}[/red]"
    console.print(f"router {text(router['url'])}: {state}; {len(router['upstreams'])} upstream(s)")
    if doc.get("door") is not None:
        from fleetctl.cli.door_cmd import door_lines_of

        for line in door_lines_of(doc["door"]):
            console.print(line)
    if "pools" in doc:
        pools_table(console, doc["pools"])
    pooled = "pools" in doc
    table = Table(
        "host",
        *(["pool"] if pooled else []),
        "ring",
        "drained",
        "image",
        "profile",
        "health",
        "router",
        "running",
        "waiting",
        "KV",
    )
    for h in doc["hosts"]:
        health = (
            "[red]unreachable[/red]"
            if not h["reachable"]
            else f"[yellow]{text(h['container'])}[/yellow]"
            if h["container"] not in (None, "running")
            else "-"
            if h["healthy"] is None
            else "[green]ok[/green]"
            if h["healthy"]
            else "[red]unhealthy[/red]"
        )
        pool = [text(h["pool"] or "spare")] if pooled else []
        table.add_row(
            text(h["name"]),
            *pool,
            text(h["ring"] or "-"),
            f"yes: {text(h['drain_reason'])}" if h["drained"] else "no",
            text(h["image"] or "-"),
            text(h["profile"] or "-"),
            health,
            _in_router(h),
            _n(h["requests_running"]),
            _n(h["requests_waiting"]),
            "-" if h["kv_cache_usage"] is None else f"{h['kv_cache_usage']:.0%}",
        )
    console.print(table)


def _in_router(h: dict[str, Any]) -> str:
    if not h["in_router"]:
        return "out"
    return "[red]in, circuit open[/red]" if h.get("router_circuit") == "open" else "in"


def pools_table(console: Console, pools: list[dict[str, Any]]) -> None:
    """Each pool: its model, what runs there, how many serve against its min_serving, its load."""
    from rich.table import Table

    table = Table("pool", "model", "profiles", "images", "serving", "drained", "total", "min", "running", "waiting")
    for p in pools:
        below = p["serving"] < p["min_serving"]
        serving = f"[red]{p['serving']}[/red]" if below else str(p["serving"])
        table.add_row(
            text(p["name"]),
            text(", ".join(p["models"]) or "-"),
            text(_counts(p["profiles"]) or f"- (declares {p['profile']})"),
            text(_counts(p["images"]) or "-"),
            serving,
            str(p["drained"]),
            str(p["total"]),
            str(p["min_serving"]),
            _n(p["requests_running"]),
            _n(p["requests_waiting"]),
        )
    console.print(table)
    for p in pools:
        for host, why in p["off_profile"].items():
            console.print(f"[yellow]{text(host)}: {text(why)}[/yellow]")


def _counts(tally: dict[str, int]) -> str:
    return ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in tally.items())


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def raise_if_not_as_intended(doc: dict[str, Any]) -> None:
    """Exit 3 when the fleet is not as intended (``doc["problems"]``), the first line saying how."""
    from fleetctl.core.status import summary_line

    if doc["problems"]:
        raise HostsFailed(summary_line(doc["problems"]))
