"""The run journal: typed records in and out, a torn line stays its own line, other damage is FILE:LINE."""

import json

import pytest

from fleetctl.core.records import AbortRequested, ActionBegin, ActionKind, ActionRef, RecordKind, RunFinished
from fleetctl.core.records import Outcome as O
from fleetctl.errors import ConfigError
from fleetctl.services.journal import Journal, list_runs, read_journal

BEGIN = ActionBegin(ActionRef("upgrade_step:canary:gpu-01:drain", ActionKind.UPGRADE_STEP, "canary", "gpu-01", "drain"))


def test_append_and_read_back(tmp_path):
    j = Journal(str(tmp_path), "20261122T080000Z-aaaaaa")
    j.append(BEGIN)
    j.append(RunFinished(O.COMPLETED))
    j.close()
    run = read_journal(j.path)
    assert [r.body for r in run.records] == [BEGIN, RunFinished(O.COMPLETED)]
    assert run.records[0].run_id == "20261122T080000Z-aaaaaa" and not run.torn and not run.problems


def test_a_torn_line_is_ended_before_the_next_record_so_neither_is_lost(tmp_path):
    j = Journal(str(tmp_path), "r1")
    j.append(BEGIN)
    j.close()
    with open(j.path, "a") as f:
        f.write('{"schema": "fleetctl.journal/v1", "event": "action_do')  # killed mid-write
    j = Journal(str(tmp_path), "r1")  # a resume opens it again
    j.append(AbortRequested())
    j.close()
    run = read_journal(j.path)
    assert [r.kind for r in run.records] == [RecordKind.ACTION_BEGIN, RecordKind.ABORT_REQUESTED]
    assert run.torn == (2,) and not run.problems and run.error() is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("hello", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema": "fleetctl.journal/v9", "event": "run_started"}', "schema is 'fleetctl.journal/v9'"),
        ('{"schema": "fleetctl.journal/v1", "event": "party", "at": "2026-11-30T08:00:00Z"}', "event 'party'"),
    ],
)
def test_any_other_unreadable_line_is_a_file_line_error(tmp_path, line, reason):
    j = Journal(str(tmp_path), "r1")
    j.append(BEGIN)
    j.close()
    with open(j.path, "a") as f:
        f.write(line + "\n")
    with open(j.path, "a") as f:
        f.write(json.dumps(json.loads(open(j.path).readline())) + "\n")
    error = read_journal(j.path).error()
    assert isinstance(error, ConfigError) and error.line == 2 and reason in str(error)
    assert str(error).startswith(f"{j.path}:2: ") and "--abandon" in error.hint


def test_runs_newest_first(tmp_path):
    for run_id in ("20261122T080000Z-aaaaaa", "20261122T090000Z-bbbbbb"):
        j = Journal(str(tmp_path), run_id)
        j.append(AbortRequested())
        j.close()
    assert [run.run_id for run in list_runs(str(tmp_path))] == ["20261122T090000Z-bbbbbb", "20261122T080000Z-aaaaaa"]
    assert list(list_runs(str(tmp_path / "nothing"))) == []
