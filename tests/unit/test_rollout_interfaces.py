"""The rollout's interfaces, pinned by recordings made with the fleetctl.journal/v1 code (tests/fake/record.py):
the ``--json`` plan, event lines and summary line, ``history --json`` and the journal stay byte for byte the same,
and journals left unfinished by that code still resume, abort and show in history."""

import json

import pytest

from fleetctl.errors import RolledBack
from tests.fake import FakeFleet
from tests.fake.drive import Events, resume
from tests.fake.record import FIXTURES, SCENARIOS, history_json, install_journal, record

UNFINISHED = [name for name in SCENARIOS if name.startswith("unfinished-")]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_run_prints_and_journals_what_the_v1_code_recorded(name, tmp_path):
    for key, text in record(name, tmp_path).items():
        if key == "world.json":  # the test input for resuming, not an interface (state.json's times are real)
            continue
        assert text == (FIXTURES / f"{name}.{key}").read_text(), f"{name}.{key} changed"


@pytest.mark.parametrize("name", UNFINISHED)
def test_a_recorded_unfinished_run_shows_in_history(name, tmp_path):
    fake = FakeFleet(tmp_path)
    install_journal(fake, name)
    runs = json.loads(history_json(fake))["runs"]
    assert [(r["outcome"], r["profile"], r["hosts"]) for r in runs] == [("unfinished", "next", 4)]


@pytest.mark.parametrize("name", UNFINISHED)
def test_a_recorded_unfinished_run_resumes_to_the_end(name, tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    install_journal(fake, name)
    if name == "unfinished-mid-rollback":
        with pytest.raises(RolledBack):
            resume(fake, events)
        assert set(fake.images().values()) == {"lab/vllm:stable"}
    else:
        assert resume(fake, events).finished == "completed"
        assert set(fake.images().values()) == {"lab/vllm:next"}
    assert events[0]["event"] == "resume"
    assert fake.in_router() == set(fake.hosts) and not fake.state().drained
    assert json.loads(history_json(fake))["runs"][0]["outcome"] in ("completed", "rolled_back")


@pytest.mark.parametrize("name", UNFINISHED)
def test_a_recorded_unfinished_run_aborts_back_to_the_old_version(name, tmp_path):
    fake = FakeFleet(tmp_path)
    install_journal(fake, name)
    assert resume(fake, abort=True).finished == "aborted"
    assert set(fake.images().values()) == {"lab/vllm:stable"}
    assert fake.in_router() == set(fake.hosts) and not fake.state().drained
    assert json.loads(history_json(fake))["runs"][0]["outcome"] == "aborted"
