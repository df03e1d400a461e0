"""The live view on a terminal console, and how ``fleetctl upgrade`` chooses it over the line printer."""

import io
import json
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

import fleetctl.services.upgrade as upgrade_service
from fleetctl.cli import render_upgrade
from fleetctl.cli.context import AppContext
from fleetctl.cli.live_upgrade import live_sink
from fleetctl.core.rollout_plan import Ring, RolloutPlan

PLAN = RolloutPlan(rings=(Ring("canary", (("gpu-a",),)), Ring("rest", (("gpu-b", "gpu-c"),))), batch_size=2)
CHECK = {
    "metric": "ttft_p95",
    "passed": False,
    "value": 3.1,
    "threshold": 1.5,
    "hosts": ["gpu-a"],
    "detail": "x3.10 the baseline",
}


def step(kind, host, name, ring=None):
    fields = {"kind": kind, "host": host, "step": name, **({"ring": ring} if ring else {})}
    return [{"event": kind, **fields}, {"event": "done", **fields}]


EVENTS = (
    [{"event": "pull", "kind": "pull", "ring": "canary"}, {"event": "done", "kind": "pull", "ring": "canary"}]
    + [e for s in ("drain", "replace", "healthy", "undrain") for e in step("upgrade_step", "gpu-a", s, "canary")]
    + [
        {"event": "bake", "kind": "bake", "ring": "canary"},
        {"event": "judge", "kind": "judge", "ring": "canary"},
        {"event": "gate", "ring": "canary", "passed": False, "checks": [CHECK]},
    ]
    + [e for s in ("drain", "restore", "healthy", "undrain") for e in step("rollback_step", "gpu-a", s)]
    + [{"event": "finished", "outcome": "rolled_back"}]
)


def terminal():
    return Console(file=io.StringIO(), force_terminal=True, width=120)


def text(console):
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())


def test_the_live_view_leaves_a_final_table_naming_hosts_rings_and_the_gate():
    console = terminal()
    with live_sink(console, PLAN, 30) as sink:
        for event in EVENTS:
            sink(event)
    out = text(console)
    final = out[out.rindex("upgrade: ") :]  # the last frame Live drew: the table left on screen
    for word in (
        "gpu-a",
        "gpu-b",
        "gpu-c",
        "canary",
        "rest",
        "gate FAILED",
        "ttft_p95: x3.10 the baseline",
        "rolled back",
        "not upgraded",
        "skipped",
    ):
        assert word in final, word


def test_the_live_view_stops_cleanly_on_ctrl_c_and_keeps_the_table():
    console = terminal()
    with pytest.raises(KeyboardInterrupt), live_sink(console, PLAN, 30) as sink:
        for event in EVENTS[:5]:
            sink(event)
        raise KeyboardInterrupt
    out = text(console)
    assert "replacing" in out[out.rindex("upgrade: ") :] and "\x1b[?25h" in console.file.getvalue()  # cursor back


@pytest.fixture
def fake_run(monkeypatch):
    """``render_upgrade.run`` with the executor replaced by the event list above and no journal summary."""

    def start_run(fleet, request, plan, on_event, pool=None):
        for event in EVENTS:
            on_event(event)

    monkeypatch.setattr(upgrade_service, "start_run", start_run)
    monkeypatch.setattr(render_upgrade, "summary", lambda *a: None)

    def run(console, as_json):
        app_ctx = AppContext(env={})
        app_ctx.__dict__["err"] = console
        render_upgrade.run(app_ctx, None, SimpleNamespace(bake_s=30), PLAN, as_json=as_json)

    return run


def test_a_terminal_gets_the_live_view(fake_run, capsys):
    console = terminal()
    fake_run(console, as_json=False)
    assert "gate FAILED" in text(console) and "┃" in text(console) and capsys.readouterr().out == ""


def test_with_json_and_a_terminal_json_goes_to_stdout_and_the_view_to_stderr(fake_run, capsys):
    console = terminal()
    fake_run(console, as_json=True)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event"] for line in lines] == [e["event"] for e in EVENTS]
    assert "gate FAILED" in text(console)


def test_without_a_terminal_each_event_is_one_line(fake_run, capsys):
    console = Console(file=io.StringIO(), width=120)
    fake_run(console, as_json=False)
    out = text(console)
    assert "gate canary: FAILED" in out and "┃" not in out and capsys.readouterr().out == ""


def test_with_json_and_no_terminal_only_json_is_written(fake_run, capsys):
    console = Console(file=io.StringIO(), width=120)
    fake_run(console, as_json=True)
    assert len(capsys.readouterr().out.splitlines()) == len(EVENTS) and text(console) == ""
