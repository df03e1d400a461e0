"""A ``lock.json`` that cannot be read is never "no holder": stale when the flock is free, held when it is not."""

import fcntl
import os

import pytest

from fleetctl.errors import ConfigError, ExitCode, LockHeld
from fleetctl.services.lock import fleet_lock

UNREADABLE = [
    (b"", "lock.json is empty"),
    (b'{"schema": "fleetctl.lock/v1", "pid": 1', "lock.json is not JSON"),
    (b"[1, 2]", "lock.json is not a fleetctl.lock/v1 record"),
    (b'{"pid": 4242}', "lock.json is not a fleetctl.lock/v1 record"),
    (b"\xff\xfe garbage", "lock.json cannot be read: not UTF-8 text"),
    (b"[" * 100_000, "lock.json is not JSON"),
]


@pytest.fixture
def flock_held(tmp_path):
    """Another holder's flock on <state>/lock (a second open file description conflicts like another process)."""
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield
    os.close(fd)


@pytest.mark.parametrize(("content", "why"), UNREADABLE)
def test_unreadable_record_with_the_flock_free_is_a_stale_lock(tmp_path, content, why):
    (tmp_path / "lock.json").write_bytes(content)
    with pytest.raises(LockHeld) as e:
        with fleet_lock(str(tmp_path), "fleetctl drain gpu-01"):
            pass
    assert e.value.exit_code == ExitCode.LOCKED
    assert e.value.message.startswith("stale fleet lock left by an unknown holder (") and why in e.value.message
    with fleet_lock(str(tmp_path), "fleetctl drain gpu-01", force=True) as held:  # consent takes it over
        assert held["command"] == "fleetctl drain gpu-01"
    assert not (tmp_path / "lock.json").exists()


@pytest.mark.parametrize(("content", "why"), UNREADABLE)
def test_unreadable_record_with_the_flock_held_is_a_held_lock(tmp_path, flock_held, content, why):
    (tmp_path / "lock.json").write_bytes(content)
    for force in (False, True):  # --force-unlock never steals from a live holder, known or not
        with pytest.raises(LockHeld) as e:
            with fleet_lock(str(tmp_path), "fleetctl drain gpu-01", force=force):
                pass
        assert e.value.message.startswith("the fleet is locked by an unknown holder (") and why in e.value.message
    assert (tmp_path / "lock.json").read_bytes() == content  # left as it was


def test_resume_does_not_take_over_an_unreadable_record_as_its_own(tmp_path):
    (tmp_path / "lock.json").write_text("{}")
    with pytest.raises(LockHeld, match="stale fleet lock left by an unknown holder"):
        with fleet_lock(str(tmp_path), "fleetctl upgrade --resume", run_id="run-1"):
            pass


def test_a_lock_file_that_is_a_directory_is_a_configuration_error(tmp_path):
    (tmp_path / "lock").mkdir()
    with pytest.raises(ConfigError) as e:
        with fleet_lock(str(tmp_path), "fleetctl drain gpu-01"):
            pass
    assert e.value.exit_code == ExitCode.USAGE
    assert e.value.message == f"{tmp_path / 'lock'}: cannot be opened as a lock file: it is a directory"


def test_a_record_that_is_a_directory_is_refused_and_cannot_be_taken_over_silently(tmp_path):
    (tmp_path / "lock.json").mkdir()
    with pytest.raises(LockHeld, match=r"unknown holder \(.*lock.json cannot be read: Is a directory\)"):
        with fleet_lock(str(tmp_path), "fleetctl drain gpu-01"):
            pass
    with pytest.raises(ConfigError, match="lock.json: cannot be written: it is a directory"):
        with fleet_lock(str(tmp_path), "fleetctl drain gpu-01", force=True):
            pass
