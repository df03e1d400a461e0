"""``fleetctl hosts``: the hosts the fleet file declares, with rings and labels; nothing is contacted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import JsonOpt, LimitOpt

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.core.fleet import Host

SCHEMA = "fleetctl.hosts/v1"


def register(app: typer.Typer) -> None:
    app.command("hosts")(hosts)


def hosts(ctx: typer.Context, limit: LimitOpt = None, as_json: JsonOpt = False) -> None:
    """List the fleet's hosts (name, address, port, ring, labels) without connecting to them."""
    from fleetctl.core.selector import select_hosts

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    chosen = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    if as_json:
        print(json.dumps(hosts_document(fleet.name, chosen), indent=2))
    else:
        hosts_table(app_ctx.out, fleet.name, chosen)


def host_dict(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "ring": host.ring,
        "labels": dict(host.labels),
    }


def hosts_document(fleet_name: str, chosen: Sequence[Host]) -> dict[str, Any]:
    return {"schema": SCHEMA, "fleet": fleet_name, "hosts": [host_dict(h) for h in chosen]}


COLUMNS = ("host", "address", "port", "ring", "labels")


def host_cells(host: Host) -> tuple[str, ...]:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(host.labels.items()))
    return (host.name, host.address, str(host.port or "-"), host.ring or "-", labels or "-")


def hosts_table(console: Console, fleet_name: str, chosen: Sequence[Host]) -> None:
    """The table as rich draws it. Rich takes seconds for 10,000 rows, so when every cell is plain text of one
    cell per character and the table fits the console, the same lines are written directly."""
    title = f"fleet {fleet_name} · {len(chosen)} host(s)"
    rows = [host_cells(h) for h in chosen]
    lines = boxed_lines(title, rows, console.width)
    if lines is None:
        rich_table(console, title, rows)
        return
    from rich.text import Text

    header = Text(lines[2])  # title and header cells styled as rich styles them; borders plain
    bars = [i for i, c in enumerate(lines[2]) if c == "┃"]
    for start, end in zip(bars, bars[1:]):
        header.stylize("table.header", start + 1, end)
    console.print(Text(lines[0], style="table.title"), Text(lines[1]), header, Text(lines[3]), sep="\n")
    console.file.write("".join(line + "\n" for line in lines[4:]))
    console.file.flush()


def boxed_lines(title: str, rows: list[tuple[str, ...]], width: int) -> list[str] | None:
    """Title, top border, header, separator, rows and bottom border, exactly as rich's default table draws them;
    None when rich must lay the table out itself (text that is not one cell per character, or too wide)."""
    from rich.cells import cell_len

    widths = [len(c) for c in COLUMNS]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    total = sum(widths) + 3 * len(widths) + 1
    text = "".join(cell for row in rows for cell in row)
    plain = text.isprintable() and (text.isascii() or all(cell_len(c) == len(c) for row in rows for c in row))
    if not rows or not plain or total > width or cell_len(title) > total or not title.isprintable():
        return None

    def line(left: str, middle: str, right: str, cells: tuple[str, ...]) -> str:
        return left + middle.join(f" {c.ljust(w)} " for c, w in zip(cells, widths)) + right

    rules = tuple("" for _ in widths)
    return [
        title,
        line("┏", "┳", "┓", rules).replace(" ", "━"),
        line("┃", "┃", "┃", COLUMNS),
        line("┡", "╇", "┩", rules).replace(" ", "━"),
        *(line("│", "│", "│", row) for row in rows),
        line("└", "┴", "┘", rules).replace(" ", "─"),
    ]


def rich_table(console: Console, title: str, rows: list[tuple[str, ...]]) -> None:
    from rich.table import Table

    from fleetctl.cli.safe import text

    table = Table(title=text(title), title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(text(cell) for cell in row))
    console.print(table)
