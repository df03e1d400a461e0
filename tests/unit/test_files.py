"""services/files: the fleet file read from disk, and atomic writes that never leave half a file."""

import os

import pytest

from fleetctl.errors import ConfigError
from fleetctl.services import files
from fleetctl.services.files import load_fleet, write_atomic


def test_write_atomic_creates_and_replaces(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(str(path), b"one")
    assert path.read_bytes() == b"one" and (path.stat().st_mode & 0o777) == 0o644
    write_atomic(str(path), b"two", mode=0o600)
    assert path.read_bytes() == b"two" and (path.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(str(path), b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["state.json"]


def test_write_atomic_needs_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "missing" / "x.json"), b"x")


def test_load_fleet_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "fleet.toml").write_text('[fleet]\nname = "home"\n')
    fleet = load_fleet("~/fleet.toml")
    assert fleet.name == "home" and fleet.path == str(tmp_path / "fleet.toml")
    assert fleet.state_dir == str(tmp_path / ".fleetctl")


def test_load_fleet_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_fleet(str(tmp_path / "none.toml"))
    assert str(e.value) == f"{tmp_path / 'none.toml'}: no such fleet file (use --fleet or $FLEETCTL_FLEET)"
    assert e.value.exit_code == 2
