"""Untrusted text on a terminal: the ``fleetctl.cli.safe`` rule, row by row, and every renderer that uses it."""

import io

import pytest
from rich.console import Console

from fleetctl.cli.safe import text, visible
from fleetctl.core.compat.result import FAIL, CheckReport, HostCheck, RuleResult
from fleetctl.core.inventory import HostFailure, HostReport, Snapshot

ESC_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
ESC_RED = "\x1b[31m"
MARKUP = "ECC [/red] errors [bold]x"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("gpu-a01", "gpu-a01"),
        ("ECC [/red] errors", "ECC [/red] errors"),  # markup is text: visible() leaves brackets alone
        (ESC_RED + "red", "\\x1b[31mred"),
        (ESC_TITLE, "\\x1b]0;pwned\\x07"),
        ("a\rb", "a\\x0db"),
        ("a\nb", "a\\x0ab"),
        ("tab\there", "tab\\x09here"),
        ("\x7f\x9b", "\\x7f\\x9b"),  # DEL and the 8-bit CSI
        ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override hides what follows
        ("GPU ünïcode ✓", "GPU ünïcode ✓"),
        (None, "None"),
        (3.5, "3.5"),
    ],
)
def test_visible_shows_control_characters(raw, shown):
    assert visible(raw) == shown


def test_visible_keeps_line_breaks_only_when_asked():
    assert visible("one\ntwo\x1b", newlines=True) == "one\ntwo\\x1b"


@pytest.mark.parametrize(
    "raw",
    ["ECC [/red] errors", "[bold]loud[/bold]", "[link=http://evil]x[/link]", "ends with \\", "[red", "a:cd:b", MARKUP],
)
def test_text_prints_as_itself_through_rich_markup(raw):
    console = Console(file=None, width=200, color_system=None, emoji=False)
    with console.capture() as captured:
        console.print(f"[dim]{text(raw)}[/dim]", soft_wrap=True)
    assert captured.get() == raw + "\n"


def _printed(render, *args):
    from fleetctl.cli.context import AppContext

    ctx = AppContext(env={})  # not a terminal: 250 columns, no colour
    with ctx.out.capture() as captured:
        render(ctx.out, *args)
    return captured.get()


def _assert_shown(out, *values):
    assert "\x1b" not in out and "\x07" not in out
    for value in values:
        assert visible(value) in out, (value, out)


def _status_doc(**host):
    row = {
        "name": "gpu1" + ESC_RED,
        "ring": "[canary]",
        "drained": True,
        "reachable": True,
        "drain_reason": MARKUP,
        "image": "img" + ESC_TITLE,
        "profile": "[/]prof",
        "container": "exited[/]",
        "healthy": False,
        "in_router": False,
        "requests_running": None,
        "requests_waiting": None,
        "kv_cache_usage": None,
        **host,
    }
    router = {"url": "http://r[/x]:1", "reachable": False, "error": "unreachable: [/b]" + ESC_RED, "upstreams": []}
    return {"router": router, "hosts": [row]}


def test_status_table_shows_reasons_names_and_images_as_text():
    from fleetctl.cli.render_serve import status_table

    doc = _status_doc()
    out = _printed(status_table, doc)
    h = doc["hosts"][0]
    _assert_shown(out, h["name"], "[canary]", MARKUP, h["image"], "[/]prof", "exited[/]", doc["router"]["error"])


def test_serving_events_and_outcomes_are_text():
    from fleetctl.cli.render_serve import event_printer, outcomes
    from fleetctl.services.serving import HostOutcome

    event = {"event": "drained", "host": "gpu1" + ESC_RED, "ring": "canary", "reason": MARKUP}
    out = _printed(lambda console: event_printer(console)(event))
    _assert_shown(out, "[canary] gpu1" + ESC_RED + ": drained reason=" + MARKUP)
    out = _printed(outcomes, "drain", [HostOutcome("gpu[/x]" + ESC_TITLE, False, MARKUP)])
    _assert_shown(out, "gpu[/x]" + ESC_TITLE + ": " + MARKUP)


def test_inventory_table_and_diff_are_text():
    from fleetctl.cli.render import inventory_diff, inventory_table
    from fleetctl.core.inventory import Change

    bad = HostReport("gpu1" + ESC_TITLE, "10.0.0.1", "[r]", error=HostFailure("unreachable", MARKUP + ESC_RED))
    snapshot = Snapshot(taken_at="2026[/]", hosts=(bad,), fleet="prod" + ESC_RED)
    _assert_shown(_printed(inventory_table, snapshot), bad.name, "[r]", MARKUP + ESC_RED, "prod" + ESC_RED, "2026[/]")
    change = Change(host="gpu1" + ESC_RED, path="driver[/]", before="[b]1", after="2" + ESC_TITLE)
    _assert_shown(_printed(inventory_diff, [change], False), change.host, "driver[/]", "[b]1", change.after)


def test_check_table_is_text_in_both_modes():
    from fleetctl.cli.check_render import check_table

    failed = RuleResult("driver_for_cuda", FAIL, "1", "2", "driver " + ESC_RED + "[/red]", fix="fix" + ESC_TITLE)
    report = CheckReport(
        profile="p" + ESC_RED,
        image="img[/]",
        cuda="12.4",
        rules=("driver_for_cuda",),
        hosts=(
            HostCheck("gpu1" + ESC_TITLE, (failed,)),
            HostCheck("gpu2[/]", error=HostFailure("auth", "no" + ESC_RED)),
        ),
    )
    for color_system in (None, "truecolor"):  # plain writes for pipes and CI logs, rich text on a terminal
        file = io.StringIO()
        console = Console(file=file, width=300, color_system=color_system, force_terminal=bool(color_system))
        check_table(console, report)
        out = _strip_sgr(file.getvalue())  # rich's own styling; an SGR from a value would stay as \x1b[31m
        _assert_shown(out, "gpu1" + ESC_TITLE, "p" + ESC_RED, "driver " + ESC_RED + "[/red]", "fix" + ESC_TITLE)
        _assert_shown(out, "gpu2[/]  auth: no" + ESC_RED)


def _strip_sgr(out):
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", out)


def test_router_renderers_are_text():
    from fleetctl.cli.router_cmd import show_diff, status_table
    from fleetctl.core.router import RouterDiff

    doc = {
        "url": "http://r[/]:1",
        "process": {"pid": 7, "since": "x" + ESC_RED},
        "upstreams": [{"url": "http://a[/b]:8000", "healthy": True, "load": None, "intended": True}],
        "missing": ["http://m" + ESC_TITLE + ":8000"],
        "unexpected": [],
    }
    _assert_shown(_printed(status_table, doc), "http://r[/]:1", "x" + ESC_RED, "http://a[/b]:8000", doc["missing"][0])
    diff = RouterDiff(add=("http://a[/b]:1",), remove=("http://c" + ESC_RED + ":1",))
    _assert_shown(_printed(show_diff, "http://r:1", diff, True), "would add http://a[/b]:1", diff.remove[0])
