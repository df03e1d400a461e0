"""``fleetctl hosts`` draws its table by hand when it can (rich takes seconds for 10,000 rows): the lines must be
the ones rich draws, and rich must still draw whatever the hand-drawn table cannot show the same way."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from fleetctl.cli.hosts_cmd import boxed_lines, host_cells, hosts_table, rich_table
from fleetctl.core.fleet import Host

HOSTS = [
    Host("gpu-a01", "10.0.1.11", port=2222, ring="canary", labels={"rack": "r1"}),
    Host("gpu-a02", "gpu-a02", ring="main", labels={"zone": "b", "rack": "r2"}),
    Host("gpu-b01", "gpu-b01"),
    Host("a-much-longer-host-name-than-the-others", "[fe80::1%eth0]", port=22),
]


def render(draw, color: str | None = None, width: int = 250) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=color, force_terminal=color is not None, soft_wrap=True)
    draw(console)
    return buffer.getvalue()


def by_rich(hosts: list[Host], name: str = "prod"):
    return lambda c: rich_table(c, f"fleet {name} · {len(hosts)} host(s)", [host_cells(h) for h in hosts])


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("width", [80, 120, 250])
def test_the_hand_drawn_table_is_the_one_rich_draws(count, width):
    hosts = HOSTS[:count]
    assert boxed_lines("t", [host_cells(h) for h in hosts], width) is not None or width == 80
    assert render(lambda c: hosts_table(c, "prod", hosts), width=width) == render(by_rich(hosts), width=width)


def test_on_a_colour_terminal_the_text_is_the_same_and_title_and_header_are_styled():
    mine = render(lambda c: hosts_table(c, "prod", HOSTS), "standard")
    assert plain(mine) == plain(render(by_rich(HOSTS), "standard"))
    assert mine.startswith("\x1b[3mfleet prod · 4 host(s)\x1b[0m\n") and "┃\x1b[1m host " in mine


@pytest.mark.parametrize(
    "hosts, name, width",
    [
        ([], "prod", 250),  # no rows
        (HOSTS, "prod", 60),  # too wide: rich folds the columns
        ([Host("gpu-1", "gpu-1", labels={"site": "東京"})], "prod", 250),  # two cells per character
        ([Host("gpu-1", "gpu-1", labels={"note": "\x1b[31mred"})], "prod", 250),  # a control character
        ([Host("gpu-1", "gpu-1")], "x" * 100, 250),  # a title wider than the table
    ],
)
def test_what_the_hand_drawn_table_cannot_show_the_same_way_goes_to_rich(hosts, name, width):
    title = f"fleet {name} · {len(hosts)} host(s)"
    assert boxed_lines(title, [host_cells(h) for h in hosts], width) is None
    assert render(lambda c: hosts_table(c, name, hosts), width=width) == render(by_rich(hosts, name), width=width)
