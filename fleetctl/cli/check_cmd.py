"""``fleetctl check`` (hosts against a deployment profile) and ``fleetctl matrix show`` (what things need)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from fleetctl.cli.context import AppContext, get_context
from fleetctl.cli.options import AcceptNewOpt, ForksOpt, LimitOpt
from fleetctl.cli.safe import text

if TYPE_CHECKING:
    from fleetctl.core.compat.matrix import Matrix
    from fleetctl.core.compat.profile import Profile
    from fleetctl.core.compat.result import CheckReport
    from fleetctl.core.inventory import Snapshot


class Format(str, Enum):
    table = "table"
    json = "json"
    junit = "junit"


ProfileOpt = Annotated[
    str,
    typer.Option("--profile", "-p", metavar="PROFILE", help="Deployment profile: a file stem in profiles/ or a path."),
]
InventoryOpt = Annotated[
    str | None,
    typer.Option(
        "--inventory",
        "-i",
        metavar="FILE",
        help="Check a saved fleetctl.inventory/v1 snapshot offline (no SSH): what CI runs.",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json (fleetctl.check/v1) or junit.")]
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", "-o", metavar="FILE", help="Write the report to FILE (the table then goes to stdout)."),
]


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    matrix_app = typer.Typer(name="matrix", help="The compatibility matrix (profiles/matrix/).", no_args_is_help=True)
    matrix_app.command("show")(matrix_show)
    app.add_typer(matrix_app, name="matrix")


def check(
    ctx: typer.Context,
    profile: ProfileOpt,
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    forks: ForksOpt = 32,
    accept_new_host_keys: AcceptNewOpt = False,
) -> None:
    """Check every host against a deployment profile and the compatibility matrix.

    Exit codes: 0 every host passes (warnings allowed), 4 a host failed a rule,
    3 a host could not be probed (and none failed), 2 unknown or bad profile, matrix or snapshot file.
    """
    from fleetctl.core.compat.rules import check_snapshot

    app_ctx = get_context(ctx)
    matrix, prof = load_profile(app_ctx, profile)
    if inventory is not None:
        from fleetctl.cli.inventory_cmd import note_old_facts

        with paused_gc():
            snapshot = offline_snapshot(inventory, limit)
            note_old_facts(app_ctx.err, snapshot)
            report = check_snapshot(snapshot, prof, matrix)
    else:
        report = check_snapshot(live_snapshot(app_ctx, limit, forks, accept_new_host_keys), prof, matrix)
    with paused_gc():
        emit(app_ctx, report, fmt, output)
    raise_for_verdict(report)


@contextmanager
def paused_gc() -> Iterator[None]:
    """A large snapshot is millions of acyclic objects; the collector's passes over them are pure overhead. They
    stay out of its passes afterwards too (``gc.freeze``: kept until the command exits, which it soon does), else
    its first pass once enabled would walk them all."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def load_profile(app_ctx: AppContext, ref: str) -> tuple[Matrix, Profile]:
    from fleetctl.services import profiles

    dirs = profiles.profile_dirs(app_ctx.env, app_ctx.resolved_fleet_path)
    matrix = profiles.load_matrix(dirs)
    return matrix, profiles.load_profile(ref, dirs, matrix)


def offline_snapshot(path: str, limit: str | None) -> Snapshot:
    from dataclasses import replace

    from fleetctl.services.snapshot import load_snapshot

    snapshot = load_snapshot(path)
    if limit is None:
        return snapshot
    chosen = select_names(snapshot, limit)
    return replace(snapshot, hosts=tuple(h for h in snapshot.hosts if h.name in chosen))


def select_names(snapshot: Snapshot, pattern: str) -> set[str]:
    """Names of the snapshot's hosts that ``--limit`` selects (name globs and ring=; no labels in a snapshot)."""
    from fleetctl.core.fleet import Host
    from fleetctl.core.selector import select_hosts

    hosts = tuple(Host(name=h.name, address=h.address, ring=h.ring) for h in snapshot.hosts)
    return {h.name for h in select_hosts(hosts, pattern, fleet_name=f"snapshot {snapshot.fleet or ''}".strip())}


def live_snapshot(app_ctx: AppContext, limit: str | None, forks: int, accept_new: bool) -> Snapshot:
    from fleetctl.cli.render import host_progress
    from fleetctl.core.selector import select_hosts
    from fleetctl.services.inventory import collect_inventory

    fleet = app_ctx.load_fleet()
    hosts = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    with host_progress(app_ctx.err, len(hosts), "probing") as advance:
        return collect_inventory(fleet, hosts, forks=forks, accept_new_host_keys=accept_new, on_host_done=advance)


def emit(app_ctx: AppContext, report: CheckReport, fmt: Format, output: str | None) -> None:
    """The document on stdout, or in ``output`` with the human table on stdout."""
    from fleetctl.cli.check_render import check_table
    from fleetctl.core.compat.report import to_junit

    if fmt is Format.table and output is None:
        check_table(app_ctx.out, report)
        return
    if fmt is Format.table:
        document = _plain_table(report)
    else:
        document = json_document(report) if fmt is Format.json else to_junit(report)
    if output is None:
        typer.echo(document, nl=False)
        return
    write_output(output, document)
    check_table(app_ctx.out, report)
    app_ctx.err.print(f"[dim]{fmt.value} report written to {text(output)}[/dim]")


def json_document(report: CheckReport) -> str:
    """Indented for people up to a few hundred hosts; compact beyond (indenting is 4× slower in Python)."""
    from fleetctl.core.compat.report import to_json

    return json.dumps(to_json(report), indent=2 if len(report.hosts) <= 500 else None, ensure_ascii=False) + "\n"


def _plain_table(report: CheckReport) -> str:
    import io

    from rich.console import Console

    from fleetctl.cli.check_render import check_table

    buffer = io.StringIO()
    check_table(Console(file=buffer, color_system=None), report)
    return buffer.getvalue()


def write_output(path: str, document: str) -> None:
    from fleetctl.errors import UsageError

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(document)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from e


def raise_for_verdict(report: CheckReport) -> None:
    from fleetctl.errors import CheckFailed, HostsFailed

    total = len(report.hosts)
    if report.verdict == "fail":
        names = ", ".join(h.name for h in report.failed[:5]) + (" ..." if len(report.failed) > 5 else "")
        raise CheckFailed(f"{len(report.failed)} of {total} hosts fail profile {report.profile}: {names}")
    if report.verdict == "unprobed":
        names = ", ".join(h.name for h in report.unprobed[:5]) + (" ..." if len(report.unprobed) > 5 else "")
        raise HostsFailed(f"{len(report.unprobed)} of {total} hosts could not be probed: {names}")


def matrix_show(
    ctx: typer.Context,
    cuda: Annotated[str | None, typer.Option("--cuda", metavar="X.Y", help="What a CUDA release needs.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", metavar="NAME", help='A GPU model, e.g. "NVIDIA H200".')] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", metavar="PROFILE", help="What a deployment profile needs.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only on stdout.")] = False,
) -> None:
    """Show what a CUDA release, a GPU model or a profile needs, with the sources."""
    from fleetctl.cli.check_render import lines_table
    from fleetctl.core.compat import explain
    from fleetctl.errors import UsageError

    app_ctx = get_context(ctx)
    if not (cuda or gpu or profile):
        raise UsageError("give --cuda X.Y, --gpu NAME or --profile PROFILE")
    sections = []
    if profile:
        matrix, prof = load_profile(app_ctx, profile)
        sections.append((f"profile {prof.name}", explain.explain_profile(matrix, prof)))
    else:
        matrix = _matrix(app_ctx)
    if cuda:
        sections.append((f"CUDA {cuda}", explain.explain_cuda(matrix, cuda)))
    if gpu:
        sections.append((f"GPU {gpu}", explain.explain_gpu(matrix, gpu)))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "schema": "fleetctl.matrix-show/v1",
                    "sections": [{"title": t, "lines": [line.to_dict() for line in lines]} for t, lines in sections],
                },
                indent=2,
            )
        )
        return
    for title, lines in sections:
        lines_table(app_ctx.out, title, lines)


def _matrix(app_ctx: AppContext) -> Matrix:
    from fleetctl.services import profiles

    return profiles.load_matrix(profiles.profile_dirs(app_ctx.env, app_ctx.resolved_fleet_path))
