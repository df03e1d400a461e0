"""The rollout's interfaces, pinned by recordings made with the fleetctl.journal/v1 code (tests/fake/record.py):
the ``--json`` plan, event lines and summary line, ``history --json`` and the journal keep every key and value the
v1 code wrote, in the same order of lines (new keys are additions: the bake's settings in the head, the synthetic
counts and interim measurements of a judge), and journals left unfinished by that code still resume, abort and
show in history."""

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
        recorded = (FIXTURES / f"{name}.{key}").read_text()
        if key.endswith("json") or key.endswith("jsonl"):
            assert_additions_only(json_docs(recorded), json_docs(text), f"{name}.{key}")
        else:
            assert text == recorded, f"{name}.{key} changed"


def json_docs(text: str) -> list:
    """A JSON file's documents: one, or one a line."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_additions_only(recorded, now, where: str) -> None:
    """``now`` holds everything ``recorded`` did, with the same values; objects may have more keys."""
    if isinstance(recorded, dict):
        assert isinstance(now, dict), f"{where}: no longer an object"
        for key, value in recorded.items():
            assert key in now, f"{where}.{key}: gone"
            assert_additions_only(value, now[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(now, list) and len(now) == len(recorded), f"{where}: {len(recorded)} items then, not now"
        for i, (a, b) in enumerate(zip(recorded, now, strict=True)):
            assert_additions_only(a, b, f"{where}[{i}]")
    else:
        assert now == recorded, f"{where}: {recorded!r} then, {now!r} now"


def test_additions_only_refuses_a_changed_value_or_a_lost_key():
    assert_additions_only({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4}, "x")
    for changed in ({"a": [1, {"b": 3}]}, {"a": [1]}, {"a": [1, {}]}, {}):
        with pytest.raises(AssertionError):
            assert_additions_only({"a": [1, {"b": 2}]}, changed, "x")


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
