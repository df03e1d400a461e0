"""A journal that does not read: one FILE:LINE line and exit 2, never a traceback; ``--abandon`` is the way out
that loses nothing; ``--abort`` works from what the journal records where it can; a declined prompt exits 2."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app
from tests.fake import FakeFleet
from tests.fake.drive import resume
from tests.fake.record import RUN_ID, install_journal

RUN = f".fleetctl/runs/{RUN_ID}.jsonl"


def cli(fake, *args):
    return CliRunner().invoke(app, ["--fleet", str(fake.root / "fleet.toml"), *args])


def damage(fake, line: int, change) -> Path:
    """Rewrite one line of the installed journal (1-based) with ``change(doc) -> doc or text``."""
    path = fake.root / RUN
    lines = path.read_text().splitlines()
    new = change(json.loads(lines[line - 1]))
    lines[line - 1] = new if isinstance(new, str) else json.dumps(new, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def without(key):
    return lambda doc: {k: v for k, v in doc.items() if k != key}


def setting(key, value):
    return lambda doc: {**doc, key: value}


DAMAGE = [
    pytest.param(1, without("profile_path"), "run_started without profile_path", id="no-profile-path"),
    pytest.param(1, setting("plan", "garbage"), "plan is not an object", id="plan-garbage"),
    pytest.param(3, setting("at", 123), "at is not text: 123", id="at-number"),
    pytest.param(4, lambda doc: "hello", "not JSON", id="not-json"),
    pytest.param(4, setting("event", "party"), "event 'party' is not one of", id="unknown-kind"),
]


@pytest.mark.parametrize(("line", "change", "reason"), DAMAGE)
@pytest.mark.parametrize("command", [["upgrade", "--resume"], ["upgrade", "--abort"], ["upgrade", "-p", "next"]])
def test_a_damaged_unfinished_journal_is_one_file_line_error_and_exit_2(tmp_path, line, change, reason, command):
    fake = FakeFleet(tmp_path)
    install_journal(fake, "unfinished-after-canary")
    damage(fake, line, change)
    if command == ["upgrade", "--abort"] and line == 1 and "profile_path" in reason:
        pytest.skip("an abort works from what this journal records (it needs no profile): see below")
    result = cli(fake, *command, "--yes")
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {fake.root / RUN}:{line}: ") and reason in first, first
    assert "fleetctl upgrade --abandon --reason TEXT" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("line", "change", "reason"), DAMAGE)
def test_abandon_lets_new_runs_start_again_and_loses_nothing(tmp_path, line, change, reason):
    fake = FakeFleet(tmp_path)
    install_journal(fake, "unfinished-after-canary")
    path = damage(fake, line, change)
    before = path.read_text()
    result = cli(fake, "upgrade", "--abandon", "--reason", "ECC [/red] errors on gpu-01", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["schema"], doc["run_id"], doc["outcome"]) == ("fleetctl.abandon/v1", RUN_ID, "abandoned")
    assert doc["reason"] == "ECC [/red] errors on gpu-01"
    after = path.read_text()
    assert after.startswith(before) and after.count("\n") == before.count("\n") + 1  # appended, nothing lost
    history = cli(fake, "history", "--json")
    assert history.exit_code == 0 and json.loads(history.stdout)["runs"][0]["run_id"] == RUN_ID
    assert f"{fake.root / RUN}:{line}" in history.stderr  # said, not skipped silently
    assert cli(fake, "upgrade", "--resume").exit_code == 2  # nothing left to resume: a usage error, not a crash


def test_abandon_needs_a_reason_and_an_unfinished_run(tmp_path):
    fake = FakeFleet(tmp_path)
    assert cli(fake, "upgrade", "--abandon").exit_code == 2
    result = cli(fake, "upgrade", "--abandon", "--reason", "x")
    assert result.exit_code == 2 and "no unfinished run to abandon" in result.stderr


def test_abort_of_a_run_whose_head_lost_its_profile_puts_the_old_version_back(tmp_path):
    fake = FakeFleet(tmp_path)
    install_journal(fake, "unfinished-after-canary")  # gpu-01 upgraded, gpu-02 drained
    damage(fake, 1, without("profile_path"))
    assert resume(fake, abort=True).finished == "aborted"
    assert set(fake.images().values()) == {"lab/vllm:stable"}
    assert fake.in_router() == set(fake.hosts) and not fake.state().drained


def test_a_torn_record_stays_its_own_line_and_a_crashed_abort_still_aborts(tmp_path):
    """run_started, *torn*, abort_requested, action_begin: the abort is read back, so the run goes on backwards."""
    fake = FakeFleet(tmp_path)
    install_journal(fake, "unfinished-mid-replace")
    path = fake.root / RUN
    with open(path, "a") as f:
        f.write('{"at": "2026-11-30T08:00:03.000Z", "event": "action_do')  # killed mid-write
    from fleetctl.core.records import AbortRequested
    from fleetctl.services.journal import Journal

    journal = Journal(str(fake.root / ".fleetctl"), RUN_ID)
    journal.append(AbortRequested())  # the abort that then crashed too
    journal.close()
    lines = path.read_text().splitlines()
    assert lines[-2].endswith('"event": "action_do') and '"abort_requested"' in lines[-1]
    events = []
    assert resume(fake, events.append).finished == "aborted"  # --resume continues the abort
    assert any(e.get("event") == "torn_record" and e["line"] == len(lines) - 1 for e in events)
    assert set(fake.images().values()) == {"lab/vllm:stable"}


@pytest.mark.parametrize("question", ["Start this rollout?", "Roll back?"])
def test_declining_the_prompt_exits_2_and_says_nothing_changed(monkeypatch, capsys, question):
    import typer

    import fleetctl.cli.render_upgrade as ui

    asked = []
    monkeypatch.setattr(typer, "confirm", lambda text, **_: asked.append(text) or False)
    with pytest.raises(typer.Exit) as e:
        ui.confirm_or_cancel(False, question)
    assert (e.value.exit_code, asked) == (2, [question])
    assert capsys.readouterr().err == "cancelled: nothing changed (--yes runs without asking)\n"
    ui.confirm_or_cancel(True, question)  # --yes: not asked
    assert asked == [question]
