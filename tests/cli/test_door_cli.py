"""`fleetctl door`: settings and keys errors as one line, hash-key, and a real HAProxy's up/status/reload/down."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app
from fleetctl.core.door import hash_key

FLEET = """[fleet]
name = "f"

[router]
url = "http://127.0.0.1:{router}"
{door}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fleet_file(tmp_path, door: str = "", router: int = 30000) -> str:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.format(router=router, door=door))
    return str(path)


def invoke(path: str, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["--fleet", path, *args], input=stdin)


def test_without_a_door_up_is_a_usage_error_and_status_says_none(tmp_path):
    path = fleet_file(tmp_path)
    result = invoke(path, "door", "up")
    assert result.exit_code == 2 and "declares no front door" in result.stderr
    result = invoke(path, "door", "status")
    assert result.exit_code == 0 and "none declared" in result.stdout


def test_a_router_url_off_loopback_is_file_line(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text('[fleet]\nname = "f"\n\n[router]\nurl = "http://10.0.0.9:30000"\nlisten = "0.0.0.0:8080"\n')
    result = invoke(str(path), "door", "status")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"error: {path}:5: router.url")


def test_a_bad_client_is_keys_file_line_and_never_shows_the_value(tmp_path):
    (tmp_path / "keys.toml").write_text('[[client]]\nname = "a"\nkey_sha256 = "sk-plain-secret"\n')
    path = fleet_file(tmp_path, 'listen = "127.0.0.1:18099"\nkeys_file = "keys.toml"')
    result = invoke(path, "door", "up")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("error: keys.toml:1: client 1: key_sha256")
    assert "sk-plain-secret" not in result.stdout + result.stderr


def test_hash_key_reads_stdin_and_prints_only_the_digest(tmp_path):
    result = invoke(fleet_file(tmp_path), "door", "hash-key", stdin="sk-client-1\n")
    assert result.exit_code == 0
    assert result.stdout == f'key_sha256 = "{hash_key("sk-client-1")}"\n'
    assert invoke(fleet_file(tmp_path), "door", "hash-key", stdin="\n").exit_code == 2


def test_status_of_a_declared_door_that_is_not_running_is_exit_2(tmp_path):
    result = invoke(fleet_file(tmp_path, 'listen = "127.0.0.1:18098"'), "door", "status")
    assert result.exit_code == 2 and "not running" in result.stdout


@pytest.mark.skipif(not (shutil.which("haproxy") or os.access("/usr/sbin/haproxy", os.X_OK)), reason="no haproxy")
def test_a_real_haproxy_up_status_reload_down(tmp_path):
    listen = _port()
    (tmp_path / "keys.toml").write_text(f'[[client]]\nname = "a"\nkey_sha256 = "{hash_key("k1")}"\n')
    path = fleet_file(tmp_path, f'listen = "127.0.0.1:{listen}"\nkeys_file = "keys.toml"', router=_port())
    try:
        result = invoke(path, "door", "up")
        assert result.exit_code == 0, result.stderr
        assert f"started on http://127.0.0.1:{listen}" in result.stdout and "1 client key(s)" in result.stdout
        state = tmp_path / ".fleetctl"
        assert (state / "worker.key").stat().st_mode & 0o777 == 0o600
        worker_key = (state / "worker.key").read_text().strip()
        written = "".join(p.read_text() for p in (state / "door").iterdir() if p.suffix in (".cfg", ".map"))
        assert worker_key not in written and "k1" not in written.split()  # neither key is in a file HAProxy reads
        doc = json.loads(invoke(path, "door", "status", "--json").stdout)
        assert doc["listen"] == f"127.0.0.1:{listen}" and doc["stats"]["slots"] == 1
        (tmp_path / "keys.toml").write_text("")
        result = invoke(path, "door", "reload")
        assert result.exit_code == 0 and "reloaded" in result.stdout and "0 client key(s)" in result.stdout
        (tmp_path / "keys.toml").write_text('[[client]]\nname = "a b"\n')
        result = invoke(path, "door", "reload")
        assert result.exit_code == 2  # a bad keys file changes nothing: the running door keeps the last good one
        assert invoke(path, "door", "status").exit_code == 0
    finally:
        result = invoke(path, "door", "down")
    assert result.exit_code == 0 and "stopped" in result.stdout
    assert invoke(path, "door", "status").exit_code == 2
