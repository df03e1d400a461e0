"""``fleetctl upgrade``: plan a rollout, journal it, run it; resume, abort and revert runs from their journals.

A run's first journal record (``run_started``) holds everything needed to rebuild it after a crash: the plan,
the target profile (by path) and image, the revision, each host's serving record before the run, and the old
version's reference figures. Secrets are not in it: ``env:NAME`` values are read again on resume.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.core.compat.profile import Profile
from fleetctl.core.fleet import Fleet, Host, RolloutSettings
from fleetctl.core.gate import GateSettings
from fleetctl.core.metrics import WindowFigures, parse_metrics, window
from fleetctl.core.rollout import RunState
from fleetctl.core.rollout_plan import PlanError, RolloutPlan, plan_rollout
from fleetctl.errors import FleetError, RolledBack, UsageError
from fleetctl.services.fleetstate import load_state
from fleetctl.services.journal import Journal, list_runs, new_run_id
from fleetctl.services.rollout import Executor, Interrupt, RunContext
from fleetctl.services.serving import HostOps, spec_for

Event = Callable[[dict[str, Any]], None]
REFERENCE_WINDOW_S = 10.0


@dataclass(frozen=True)
class UpgradeRequest:
    profile: Profile
    image: str | None
    targets: tuple[Host, ...]
    environ: Mapping[str, str]
    gate: GateSettings
    bake_s: float


def rollout_settings(fleet: Fleet, profile: Profile) -> RolloutSettings:
    """The fleet's [rollout] with the profile's [rollout] overrides on top."""
    return dataclasses.replace(fleet.rollout, **profile.rollout)


def make_plan(fleet: Fleet, targets: tuple[Host, ...], settings: RolloutSettings) -> tuple[RolloutPlan, list[str]]:
    """The plan over the targets that serve now; drained hosts are left alone (named in the second value)."""
    state = load_state(fleet)
    serving = [h for h in state.serving if not state.is_drained(h)]
    skipped = [h.name for h in targets if h.name not in serving]
    chosen = tuple(h for h in targets if h.name in serving)
    try:
        return plan_rollout(chosen, settings, serving=len(serving), min_serving=fleet.router.min_serving), skipped
    except PlanError as e:
        raise UsageError(f"cannot plan the upgrade: {e}") from e


def start_run(fleet: Fleet, request: UpgradeRequest, plan: RolloutPlan, on_event: Event) -> RunState:
    from fleetctl.transport.ssh import SshPool

    from fleetctl.services.lock import tag_run

    run_id = new_run_id()
    spec = spec_for(request.profile, request.environ, run_id, request.image)
    tag_run(fleet.state_dir, run_id)
    state = load_state(fleet)
    with SshPool(fleet.ssh) as pool:
        previous = {h: {"record": {k: v for k, v in state.serving[h].to_dict().items()}, "model":
                        state.serving[h].model} for h in plan.hosts}
        on_event({"event": "reference", "seconds": REFERENCE_WINDOW_S})
        reference = reference_figures(fleet, pool, plan.hosts, request.profile.serve.port)
        journal = Journal(fleet.state_dir, run_id)
        journal.append("run_started", plan=plan.to_dict(), profile=request.profile.name,
                       profile_path=request.profile.path, image=spec.image, revision=run_id, previous=previous,
                       reference=_figures_doc(reference), bake_s=request.bake_s, gate=request.gate.__dict__)
        ctx = _context(fleet, request.profile, spec, plan, previous, reference, request.bake_s, request.gate)
        return _execute(ctx, journal, pool, [], on_event)


def reference_figures(fleet: Fleet, pool, hosts: tuple[str, ...], port: int) -> WindowFigures | None:
    """The old version's figures over a short window before anything changes (the last ring's comparison)."""
    def sample():
        out = {}
        for name in hosts:
            client = HostOps(pool, fleet.host(name)).vllm(port)
            try:
                out[name] = parse_metrics(client.metrics_text())
            except FleetError:
                pass
            finally:
                client.close()
        return out
    before = sample()
    time.sleep(REFERENCE_WINDOW_S)
    after = sample()
    total = WindowFigures()
    for name in before.keys() & after.keys():
        total = total.plus(window(before[name], after[name]))
    return total if total.requests > 0 else None


def _context(fleet, profile, spec, plan, previous, reference, bake_s, gate) -> RunContext:
    serve = profile.serve
    return RunContext(fleet=fleet, plan=plan, spec=spec, model=serve.model, port=serve.port,
                      health_timeout_s=serve.health_timeout_s, bake_s=bake_s, gate=gate, previous=previous,
                      reference=reference)


def _execute(ctx: RunContext, journal: Journal, pool, records: list[dict[str, Any]], on_event: Event) -> RunState:
    interrupt = Interrupt()
    restore = interrupt.install()
    try:
        state = Executor(ctx, journal, pool, on_event, interrupt).run(records)
    finally:
        restore()
        journal.close()
    if state.finished == "rolled_back":
        raise RolledBack(_rollback_message(state), hint=f"the run's journal: {journal.path}")
    return state


def _rollback_message(state: RunState) -> str:
    failure = state.failure or {}
    verdict = failure.get("verdict") or {}
    failed = [c for c in verdict.get("checks", []) if not c.get("passed")]
    if failed:
        c = failed[0]
        return (f"rolled back: ring {verdict.get('ring')} failed its gate on {c['metric']}: {c['detail']} "
                f"(hosts {', '.join(c['hosts'])})")
    return f"rolled back: {failure.get('action')} failed on {failure.get('host')}: {failure.get('reason')}"


def unfinished_run(fleet: Fleet) -> tuple[str, list[dict[str, Any]]] | None:
    for run_id, records in list_runs(fleet.state_dir):
        if records and records[0].get("event") == "run_started":
            if not any(r.get("event") == "run_finished" for r in records):
                return run_id, records
    return None


def resume_run(fleet: Fleet, environ: Mapping[str, str], on_event: Event, *, abort: bool = False) -> RunState:
    """Continue (or, with ``abort``, roll back) the run that did not finish."""
    from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs
    from fleetctl.transport.ssh import SshPool

    found = unfinished_run(fleet)
    if found is None:
        raise UsageError("no unfinished upgrade to " + ("abort" if abort else "resume"))
    run_id, records = found
    head = records[0]
    dirs = profile_dirs(environ, fleet.path)
    profile = load_profile(head["profile_path"], dirs, load_matrix(dirs))
    spec = spec_for(profile, environ, head["revision"], head["image"])
    plan = RolloutPlan.from_dict(head["plan"])
    journal = Journal(fleet.state_dir, run_id)
    if abort:
        records.append(journal.append("abort_requested"))
    on_event({"event": "resume", "run_id": run_id, "records": len(records)})
    with SshPool(fleet.ssh) as pool:
        ctx = _context(fleet, profile, spec, plan, head["previous"], _figures_from(head.get("reference")),
                       head["bake_s"], GateSettings(**head["gate"]))
        return _execute(ctx, journal, pool, records, on_event)


def history(fleet: Fleet) -> list[dict[str, Any]]:
    rows = []
    for run_id, records in list_runs(fleet.state_dir):
        if not records:
            continue
        head, last = records[0], records[-1]
        finished = next((r for r in reversed(records) if r.get("event") == "run_finished"), None)
        rows.append({"run_id": run_id, "started": head.get("at"), "profile": head.get("profile"),
                     "image": head.get("image"), "hosts": len(RolloutPlan.from_dict(head["plan"]).hosts)
                     if "plan" in head else None,
                     "outcome": finished.get("outcome") if finished else "unfinished",
                     "ended": (finished or last).get("at")})
    return rows


def last_completed(fleet: Fleet) -> dict[str, Any]:
    for run_id, records in list_runs(fleet.state_dir):
        if records and any(r.get("event") == "run_finished" and r.get("outcome") == "completed" for r in records):
            return records[0]
    raise UsageError("no completed upgrade to roll back")


def _figures_doc(figures: WindowFigures | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    ttft = None if figures.ttft is None else {"buckets": [[le, n] for le, n in figures.ttft.buckets],
                                              "count": figures.ttft.count, "total": figures.ttft.total}
    return {"finished": figures.finished, "errors": figures.errors, "answers": figures.answers,
            "answers_5xx": figures.answers_5xx, "ttft": ttft}


def _figures_from(doc: dict[str, Any] | None) -> WindowFigures | None:
    from fleetctl.core.metrics import Histogram

    if not doc:
        return None
    t = doc.get("ttft")
    ttft = None if t is None else Histogram(tuple((float(le), float(n)) for le, n in t["buckets"]),
                                            t["count"], t["total"])
    return WindowFigures(doc["finished"], doc["errors"], ttft, doc.get("answers", 0.0), doc.get("answers_5xx", 0.0))
