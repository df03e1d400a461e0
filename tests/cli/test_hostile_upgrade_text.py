"""Journal and plan text shown by the upgrade views is text: markup escaped, ESC visible (never raw)."""

from __future__ import annotations

import io

from rich.console import Console

from fleetctl.cli.live_upgrade import render
from fleetctl.cli.render_upgrade import history_table

HOSTILE = "ECC [/red] errors \x1b]0;owned\x07"


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=250, force_terminal=True, color_system=None), out


def test_history_shows_journal_text_as_text():
    console, out = _console()
    row = {"run_id": "r1", "started": None, "profile": HOSTILE, "image": "i", "hosts": 1, "outcome": "completed"}
    history_table(console, [row])
    shown = out.getvalue()
    assert "\x1b]0;" not in shown and "\\x1b]0;owned\\x07" in shown
    assert "ECC [/red] errors" in shown


def test_the_live_view_shows_host_names_and_errors_as_text():
    from types import SimpleNamespace

    from fleetctl.cli.live_upgrade import RunView

    host = "h[/bold]\x1b[31m"
    view = RunView(SimpleNamespace(rings=[SimpleNamespace(name="canary", hosts=(host,))]), 60)  # type: ignore[arg-type]
    view.run_id = "r\x1b[2J"
    view.rings["canary"].state, view.rings["canary"].detail = "failed", HOSTILE
    view.hosts[host].note, view.hosts[host].error = HOSTILE, HOSTILE
    console, out = _console()
    console.print(render(view, 0.0))
    shown = out.getvalue()
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown and "\x1b[31m" not in shown
    assert "h[/bold]\\x1b[31m" in shown and "ECC [/red] errors" in shown
