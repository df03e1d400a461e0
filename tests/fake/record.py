"""Scenarios driven through the fake fleet, and what each leaves behind: the ``--json`` documents and event lines
fleetctl prints and the journal it writes. ``python -m tests.fake.record`` writes them to
tests/fixtures/journals/ (recorded once, from fleetctl.journal/v1 code); tests compare against the recording.

Unfinished runs are recorded with their world (state.json, the router's upstreams, each host's containers) at
the moment of the crash, so a test can put a fake fleet back in that moment and resume or abort the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from fleetctl.services.journal import Journal, list_runs
from tests.fake.drive import request
from tests.fake.fleet import NEW_IMAGE, FakeFleet
from tests.fake.hosts import Behaviour, FakeContainer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
RUN_ID = "20261130T080002Z-f1f1f1"
ROOT = "{root}"


class Crash(BaseException):
    """The process died (SIGKILL) right after a journal record reached the disk."""


@contextlib.contextmanager
def crash_after(records: int):
    """The run dies once ``records`` journal records (of this process) are written."""
    original, written = Journal.append, [0]

    def append(self: Journal, body: Any) -> Any:
        record = original(self, body)
        written[0] += 1
        if written[0] >= records:
            raise Crash(f"after record {written[0]}: {body.kind}")
        return record

    with mock.patch.object(Journal, "append", append):
        yield


@contextlib.contextmanager
def crash_before_done(nth: int):
    """The run dies after its ``nth`` action took effect, before its ``action_done`` reached the journal."""
    from fleetctl.core.records import RecordKind

    original, seen = Journal.append, [0]

    def append(self: Journal, body: Any) -> Any:
        if body.kind is RecordKind.ACTION_DONE:
            seen[0] += 1
            if seen[0] == nth:
                raise Crash(f"before action_done {nth}")
        return original(self, body)

    with mock.patch.object(Journal, "append", append):
        yield


@contextlib.contextmanager
def fixed_run_id():
    with mock.patch("fleetctl.services.upgrade.new_run_id", lambda clock=None: RUN_ID):
        yield


def normalise(text: str, root: Path) -> str:
    return text.replace(str(root), ROOT)


def world(fake: FakeFleet) -> dict[str, Any]:
    """What a crash leaves outside the journal: state.json, the router's upstreams, each host's containers."""
    state = json.loads((Path(fake.fleet.state_dir) / "state.json").read_text())
    hosts = {
        name: {
            c.name: {"image": c.image, "revision": c.revision, "profile": c.profile, "status": c.status}
            for c in host.containers.values()
        }
        for name, host in fake.hosts.items()
    }
    return {"state": state, "router": sorted(fake.router.held), "hosts": hosts}


def restore_world(fake: FakeFleet, doc: dict[str, Any]) -> None:
    (Path(fake.fleet.state_dir) / "state.json").write_text(json.dumps(doc["state"], indent=2) + "\n")
    fake.router.held = list(doc["router"])
    for name, containers in doc["hosts"].items():
        host = fake.hosts[name]
        host.containers = {
            cname: FakeContainer(cname, c["image"], None, c["revision"], c["profile"], status=c["status"])
            for cname, c in containers.items()
        }
        host.images |= {c["image"] for c in containers.values()}


def install_journal(fake: FakeFleet, name: str) -> None:
    """A recorded journal into the fake fleet's state folder, paths pointing at this fleet's root."""
    runs = Path(fake.fleet.state_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    text = (FIXTURES / f"{name}.jsonl").read_text().replace(ROOT, str(fake.root))
    (runs / f"{RUN_ID}.jsonl").write_text(text)
    world_file = FIXTURES / f"{name}.world.json"
    if world_file.exists():
        restore_world(fake, json.loads(world_file.read_text().replace(ROOT, str(fake.root))))


def run_json(fake: FakeFleet, *, crash: int | None = None) -> dict[str, str]:
    """``fleetctl upgrade --profile next --json`` through the fake: plan document, event lines, summary line."""
    from fleetctl.cli import render_upgrade as ui
    from fleetctl.services.upgrade import start_run

    out: dict[str, str] = {}
    req, plan = request(fake)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        ui.show_plan(None, req, plan, True)  # type: ignore[arg-type]
    out["plan.json"] = printed.getvalue()
    with contextlib.redirect_stdout(io.StringIO()) as printed, fixed_run_id():
        sink = ui.event_sink(None, True)  # type: ignore[arg-type]
        guard = crash_after(crash) if crash is not None else contextlib.nullcontext()
        try:
            with guard:
                start_run(fake.fleet, req, plan, sink, ports=fake.ports())
        except Exception as e:  # RolledBack: the CLI prints the summary, then the error
            out["error.txt"] = f"{type(e).__name__}: {e}\n"
        except Crash:
            pass
        ui.summary(None, fake.fleet, True)  # type: ignore[arg-type]
    out["events.jsonl"] = printed.getvalue()
    return out


def history_json(fake: FakeFleet) -> str:
    from typer.testing import CliRunner

    from fleetctl.cli.app import app

    result = CliRunner().invoke(app, ["--fleet", str(fake.root / "fleet.toml"), "history", "--json"])
    assert result.exit_code == 0, result.output
    return result.stdout


def journal_text(fake: FakeFleet) -> str:
    return Path(next(iter(list_runs(fake.fleet.state_dir))).path).read_text()


# -- scenarios: name → (make the fleet misbehave, crash after N records or None) --------------------------------


def _bad_image(fake: FakeFleet) -> None:
    fake.behaviours[NEW_IMAGE] = Behaviour(error_rate=0.5)


SCENARIOS: dict[str, tuple[Any, int | None]] = {
    "completed": (None, None),
    "rolled-back": (_bad_image, None),
    "unfinished-after-start": (None, 1),
    "unfinished-mid-replace": (None, 6),  # run_started, pull begin/done, drain begin/done, replace begin
    "unfinished-mid-bake": (None, 12),  # the canary upgraded, its bake begun
    "unfinished-after-canary": (None, 15),  # the canary judged and passed
    "unfinished-mid-rollback": (_bad_image, 18),  # the canary failed its gate; gpu-01's restore begun
}


def record(name: str, root: Path) -> dict[str, str]:
    """Run scenario ``name`` on a fresh fake fleet under ``root``; the files it leaves, normalised."""
    fake = FakeFleet(root)
    setup, crash = SCENARIOS[name]
    if setup is not None:
        setup(fake)
    files = run_json(fake, crash=crash)
    files["jsonl"] = journal_text(fake)
    files["history.json"] = history_json(fake)
    if crash is not None:
        files["world.json"] = json.dumps(world(fake), indent=2, sort_keys=True) + "\n"
    return {key: normalise(text, root) for key, text in files.items()}


def main(argv: list[str]) -> None:
    import tempfile

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in argv or list(SCENARIOS):
        root = Path(tempfile.mkdtemp(prefix="fake-fleet-"))
        for key, text in record(name, root).items():
            (FIXTURES / f"{name}.{key}").write_text(text)
        shutil.rmtree(root)


if __name__ == "__main__":
    main(sys.argv[1:])
