"""The fleet's state records: round trips, bad documents, intended upstreams, worker URLs, and the state file."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import (
    STATE_SCHEMA,
    DrainRecord,
    FleetState,
    ServingRecord,
    StateError,
    intended_upstreams,
    worker_url,
)
from fleetctl.errors import ConfigError


def serving(host: str, url: str) -> ServingRecord:
    return ServingRecord(
        host=host,
        url=url,
        profile="stable",
        image="vllm/vllm-openai:v0.32.0",
        revision="r1",
        since="2026-01-02T03:04:05Z",
    )


def drained(host: str) -> DrainRecord:
    return DrainRecord(host=host, reason="xid 79 on GPU 3", by="alice", at="2026-01-02T04:00:00Z")


STATE = (
    FleetState()
    .with_serving(serving("gpu-a02", "http://10.0.0.2:8000"))
    .with_serving(serving("gpu-a01", "http://10.0.0.1:8000"))
    .with_serving(serving("gpu-a03", "http://10.0.0.3:8000"))
    .with_drained(drained("gpu-a03"))
)


def test_round_trip_through_json():
    doc = json.loads(json.dumps(STATE.to_dict()))
    assert doc["schema"] == STATE_SCHEMA
    assert list(doc["serving"]) == ["gpu-a01", "gpu-a02", "gpu-a03"]
    assert doc["drained"]["gpu-a03"] == {"reason": "xid 79 on GPU 3", "by": "alice", "at": "2026-01-02T04:00:00Z"}
    assert FleetState.from_dict(doc) == STATE


def test_empty_state_and_missing_tables():
    assert FleetState.from_dict({"schema": STATE_SCHEMA}) == FleetState()
    assert FleetState().to_dict() == {"schema": STATE_SCHEMA, "serving": {}, "drained": {}}


@pytest.mark.parametrize(
    "doc, words",
    [
        (None, "not a fleetctl.state/v1 document"),
        ([], "not a fleetctl.state/v1 document"),
        ({"schema": "fleetctl.state/v2"}, "not a fleetctl.state/v1 document"),
        ({"serving": {}}, "not a fleetctl.state/v1 document"),
        ({"schema": STATE_SCHEMA, "serving": []}, "serving must be an object"),
        ({"schema": STATE_SCHEMA, "drained": "gpu-a01"}, "drained must be an object"),
        ({"schema": STATE_SCHEMA, "serving": {"gpu-a01": "http://x:8000"}}, "serving.gpu-a01 must be an object"),
        (
            {"schema": STATE_SCHEMA, "serving": {"gpu-a01": {"url": "http://x:8000"}}},
            "serving.gpu-a01: profile, image, revision, since must be string(s)",
        ),
        (
            {"schema": STATE_SCHEMA, "serving": {"gpu-a01": {**serving("x", "ftp://x").to_dict()}}},
            "url must start with http:// or https://",
        ),
        (
            {"schema": STATE_SCHEMA, "drained": {"gpu-a01": {"reason": "r", "by": 3, "at": "t"}}},
            "drained.gpu-a01: by must be string(s)",
        ),
        ({"schema": STATE_SCHEMA, "drained": {"": {"reason": "r", "by": "b", "at": "t"}}}, "a host name is empty"),
    ],
)
def test_bad_documents_are_refused_with_a_reason(doc, words):
    with pytest.raises(StateError, match=words.replace("(", r"\(").replace(")", r"\)")):
        FleetState.from_dict(doc)


def test_intended_upstreams_are_serving_minus_drained():
    assert intended_upstreams(STATE) == {"http://10.0.0.1:8000", "http://10.0.0.2:8000"}
    assert intended_upstreams(STATE.without_drained("gpu-a03")) == {f"http://10.0.0.{i}:8000" for i in (1, 2, 3)}
    # a drain record for a host that serves nothing yet changes nothing, and keeps it out once it serves
    later = STATE.with_drained(drained("gpu-a04"))
    assert intended_upstreams(later) == intended_upstreams(STATE)
    assert "http://10.0.0.4:8000" not in intended_upstreams(
        later.with_serving(serving("gpu-a04", "http://10.0.0.4:8000"))
    )
    assert intended_upstreams(STATE.without_serving("gpu-a01")) == {"http://10.0.0.2:8000"}


def test_state_is_immutable_and_updates_return_new_states():
    before = STATE.to_dict()
    STATE.with_drained(drained("gpu-a01"))
    assert STATE.to_dict() == before
    with pytest.raises(TypeError):
        STATE.serving["gpu-a09"] = serving("gpu-a09", "http://10.0.0.9:8000")  # type: ignore[index]
    assert STATE.is_drained("gpu-a03") and not STATE.is_drained("gpu-a01")


@pytest.mark.parametrize(
    "address, port, url",
    [
        ("10.0.0.1", 8000, "http://10.0.0.1:8000"),
        ("gpu-a01.lab", 8001, "http://gpu-a01.lab:8001"),
        ("fd00::1", 8000, "http://[fd00::1]:8000"),
        ("[fd00::1]", 8000, "http://[fd00::1]:8000"),
        ("fe80::1%eth0", 8000, "http://[fe80::1%25eth0]:8000"),
    ],
)
def test_worker_url(address, port, url):
    assert worker_url(address, port) == url


# -- the state file (services) ------------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path) -> Fleet:
    (tmp_path / "fleet.toml").write_text("")
    return Fleet(name="t", path=str(tmp_path / "fleet.toml"), hosts=())


def test_missing_file_is_empty_state_and_save_load_round_trips(fleet):
    from fleetctl.services.statefile import load_state, save_state, state_path

    assert load_state(fleet) == FleetState()
    path = save_state(fleet, STATE)
    assert path == state_path(fleet) == os.path.join(fleet.state_dir, "state.json")
    assert load_state(fleet) == STATE


@pytest.mark.parametrize(
    "text, words",
    [("{\n  not json", "state.json:2: not valid JSON"), ('{"schema": "other"}', "state.json: not a fleetctl.state/v1")],
)
def test_bad_state_file_is_a_config_error_with_the_path(fleet, text, words):
    from fleetctl.services.statefile import load_state, state_path

    os.makedirs(fleet.state_dir)
    with open(state_path(fleet), "w") as f:
        f.write(text)
    with pytest.raises(ConfigError) as e:
        load_state(fleet)
    assert words in str(e.value) and e.value.path == state_path(fleet)


def _add_many(fleet: Fleet, prefix: str, n: int) -> None:
    from fleetctl.services.statefile import update_state

    for i in range(n):
        update_state(fleet, lambda s, i=i: s.with_drained(drained(f"{prefix}-{i}")))


def test_concurrent_updates_lose_no_records(fleet):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_many, args=(fleet, p, 25)) for p in ("a", "b", "c")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    from fleetctl.services.statefile import load_state

    assert len(load_state(fleet).drained) == 75


def test_update_returns_the_new_state_and_writes_nothing_when_unchanged(fleet):
    from fleetctl.services.statefile import state_path, update_state

    assert update_state(fleet, lambda s: s) == FleetState()
    assert not os.path.exists(state_path(fleet))
    after = update_state(fleet, lambda s: s.with_serving(serving("gpu-a01", "http://10.0.0.1:8000")))
    assert set(after.serving) == {"gpu-a01"} and os.path.exists(state_path(fleet))


def test_serving_record_keeps_the_model_and_older_records_without_one_still_load():
    from fleetctl.core.fleetstate import FleetState, ServingRecord

    record = ServingRecord("h", "http://10.0.0.1:8000", "p", "img", "r1", "t", model="lab/tiny-llama")
    state = FleetState().with_serving(record)
    assert FleetState.from_dict(state.to_dict()).serving["h"].model == "lab/tiny-llama"
    old = state.to_dict()
    del old["serving"]["h"]["model"]
    assert FleetState.from_dict(old).serving["h"].model == ""
    old["serving"]["h"]["model"] = 7
    with pytest.raises(Exception, match="model must be a string"):
        FleetState.from_dict(old)
