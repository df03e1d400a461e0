"""The worker key: made once, owner-only, never on a command line or in what is displayed."""

from __future__ import annotations

import os

import pytest

from fleetctl.core.door import DoorSettings
from fleetctl.core.fleet import Fleet, RouterSettings
from fleetctl.core.serve import REDACTED, ServeSettings, container_spec
from fleetctl.errors import ConfigError
from fleetctl.services.worker_key import fleet_worker_key, worker_key, worker_key_path
from fleetctl.transport.vllm import VllmClient


def _fleet(tmp_path, door: bool = True) -> Fleet:
    router = RouterSettings(door=DoorSettings("0.0.0.0", 8080) if door else None)
    return Fleet(name="f", path=str(tmp_path / "fleet.toml"), hosts=(), router=router)


def test_made_once_owner_only_and_stable(tmp_path):
    fleet = _fleet(tmp_path)
    first = worker_key(fleet)
    assert os.stat(worker_key_path(fleet)).st_mode & 0o777 == 0o600
    assert worker_key(fleet) == first and len(first) > 32


def test_a_key_others_can_read_is_refused(tmp_path):
    fleet = _fleet(tmp_path)
    worker_key(fleet)
    os.chmod(worker_key_path(fleet), 0o644)
    with pytest.raises(ConfigError, match="readable by others") as e:
        worker_key(fleet)
    assert open(worker_key_path(fleet)).read().strip() not in str(e.value)


def test_an_empty_key_file_is_refused(tmp_path):
    fleet = _fleet(tmp_path)
    os.makedirs(fleet.state_dir)
    fd = os.open(worker_key_path(fleet), os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(ConfigError, match="holds no key"):
        worker_key(fleet)


def test_only_a_fleet_with_a_door_uses_it(tmp_path):
    assert fleet_worker_key(_fleet(tmp_path, door=False)) is None
    assert not os.path.exists(worker_key_path(_fleet(tmp_path, door=False)))
    assert fleet_worker_key(_fleet(tmp_path)) == worker_key(_fleet(tmp_path))


def test_the_container_gets_it_in_its_environment_redacted_when_shown():
    spec = container_spec("p", "img:1", ServeSettings(model="m"), "r1", {}, worker_key="wk-secret")
    assert spec.environment["VLLM_API_KEY"] == "wk-secret"
    assert "wk-secret" not in " ".join(spec.command)
    assert spec.display()["environment"]["VLLM_API_KEY"] == REDACTED
    assert "VLLM_API_KEY" not in container_spec("p", "img:1", ServeSettings(model="m"), "r1", {}).environment


def test_the_vllm_client_sends_it_as_a_bearer_key():
    assert VllmClient("h", "http://127.0.0.1:1", api_key="wk").session.headers["Authorization"] == "Bearer wk"
    assert "Authorization" not in VllmClient("h", "http://127.0.0.1:1").session.headers
