"""The SSH layer against a real OpenSSH sshd on loopback: host keys, auth, failures, and slow hosts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fleetctl.core.fleet import Host, SshSettings
from fleetctl.errors import HostError
from fleetctl.services.fanout import fan_out
from fleetctl.transport.ssh import SshPool
from tests.support.env import free_port as _free_port
from tests.support.env import require

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _require_sshd():
    require(
        os.path.exists(SSHD) and os.geteuid() == 0, "needs root and OpenSSH's sshd (apt-get install openssh-server)"
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    _require_sshd()
    d = tmp_path_factory.mktemp("sshd")
    for name in ("hostkey", "client", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "PasswordAuthentication no\nStrictModes no\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([SSHD, "-f", str(d / "sshd_config")], check=True)
    deadline = time.monotonic() + 10
    while not (d / "sshd.pid").exists():  # sshd writes its pid file once it listens
        assert time.monotonic() < deadline, "sshd did not start"
        time.sleep(0.02)
    host_pub = " ".join((d / "hostkey.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    yield d, port
    pid = int((d / "sshd.pid").read_text())
    os.kill(pid, 15)


def _settings(d: Path, **kw) -> SshSettings:
    base = dict(user="root", identity_file=str(d / "client"), known_hosts=str(d / "known_hosts"), connect_timeout_s=3)
    return SshSettings(**{**base, **kw})


def _run(settings: SshSettings, host: Host, command: str = "echo ok"):
    with SshPool(settings, lookup=lambda alias: {}) as pool:
        return pool.run(host, command)


def test_verified_host_runs_commands_and_feeds_stdin(sshd):
    d, port = sshd
    with SshPool(_settings(d), lookup=lambda alias: {}) as pool:
        host = Host("lo", "127.0.0.1", port=port)
        first = pool.run(host, "cat; echo err >&2; exit 3", stdin=b"fed on stdin\n")
        assert (first.rc, first.stdout, first.stderr) == (3, b"fed on stdin\n", b"err\n")
        assert pool.client(host) is pool.client(host)  # one connection per host, reused


def test_unknown_host_key_is_refused_in_strict_mode(sshd):
    d, port = sshd
    with pytest.raises(HostError) as e:
        _run(_settings(d, known_hosts=str(d / "empty_known_hosts")), Host("lo", "127.0.0.1", port=port))
    assert e.value.kind == "host_key_unknown" and "SHA256:" in e.value.reason
    assert not (d / "empty_known_hosts").exists()  # nothing recorded


def test_changed_host_key_is_refused_even_with_accept_new(sshd):
    d, port = sshd
    wrong = " ".join((d / "other.pub").read_text().split()[:2])
    (d / "changed_known_hosts").write_text(f"[127.0.0.1]:{port} {wrong}\n")
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostError) as e:
            _run(
                _settings(d, known_hosts=str(d / "changed_known_hosts"), host_key_policy=policy),
                Host("lo", "127.0.0.1", port=port),
            )
        assert e.value.kind == "host_key_changed"
    assert (d / "changed_known_hosts").read_text().count("\n") == 1


def test_accept_new_records_the_key_then_verifies_it(sshd):
    d, port = sshd
    kh = d / "new_known_hosts"
    settings = _settings(d, known_hosts=str(kh), host_key_policy="accept-new")
    assert _run(settings, Host("lo", "127.0.0.1", port=port)).stdout == b"ok\n"
    recorded = kh.read_text().split()
    assert recorded[0] == f"[127.0.0.1]:{port}" and recorded[2] == (d / "hostkey.pub").read_text().split()[1]
    assert _run(_settings(d, known_hosts=str(kh)), Host("lo", "127.0.0.1", port=port)).rc == 0


def test_wrong_key_is_an_auth_error(sshd):
    d, port = sshd
    with pytest.raises(HostError) as e:
        _run(_settings(d, identity_file=str(d / "other")), Host("lo", "127.0.0.1", port=port))
    assert e.value.kind == "auth"


def test_closed_port_is_unreachable(sshd):
    d, _ = sshd
    with pytest.raises(HostError) as e:
        _run(_settings(d), Host("gone", "127.0.0.1", port=_free_port()))
    assert e.value.kind == "unreachable" and "connection refused" in e.value.reason


def test_a_silent_host_times_out_without_holding_up_the_others(sshd):
    d, port = sshd
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts TCP, never says a word: banner timeout
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    hosts = [Host("silent", "127.0.0.1", port=silent.getsockname()[1])] + [
        Host(f"ok{i}", "127.0.0.1", port=port) for i in range(3)
    ]
    done_at: dict[str, float] = {}
    start = time.monotonic()
    with SshPool(_settings(d, connect_timeout_s=5), lookup=lambda alias: {}) as pool:
        outcomes = {}
        for host, outcome in fan_out(hosts, lambda h: pool.run(h, "echo ok"), forks=8):
            outcomes[host.name] = outcome
            done_at[host.name] = time.monotonic() - start
    silent.close()
    assert isinstance(outcomes["silent"], HostError) and outcomes["silent"].kind == "timeout"
    assert all(outcomes[f"ok{i}"].stdout == b"ok\n" for i in range(3))
    assert max(done_at[f"ok{i}"] for i in range(3)) < done_at["silent"]


def test_a_connection_dropped_mid_command_is_disconnected_and_the_next_call_reconnects(sshd):
    d, port = sshd
    host = Host("lo", "127.0.0.1", port=port)
    with SshPool(_settings(d), lookup=lambda alias: {}) as pool:
        assert pool.run(host, "echo ok").stdout == b"ok\n"
        first = pool.client(host)
        with pytest.raises(HostError) as e:  # the shell's parent is sshd's process for this session
            pool.run(host, "kill -9 $PPID; sleep 5")
        assert e.value.kind == "disconnected"
        assert pool.run(host, "echo again").stdout == b"again\n"
        assert pool.client(host) is not first


def _start_sshd(d: Path, port: int, host_key: str, tag: str) -> int:
    """Another sshd like the fixture's, on ``port`` with ``host_key``; returns its pid."""
    config = d / f"sshd_config_{tag}"
    config.write_text(
        (d / "sshd_config")
        .read_text()
        .replace(f"{d}/sshd.pid", f"{d}/sshd_{tag}.pid")
        .replace(f"HostKey {d}/hostkey", f"HostKey {d}/{host_key}")
        .replace("ListenAddress 127.0.0.1:", "#")
        + f"ListenAddress 127.0.0.1:{port}\n"
    )
    subprocess.run([SSHD, "-f", str(config)], check=True)
    deadline = time.monotonic() + 10
    while not (d / f"sshd_{tag}.pid").exists():
        assert time.monotonic() < deadline, "sshd did not start"
        time.sleep(0.02)
    return int((d / f"sshd_{tag}.pid").read_text())


def test_a_connection_dropped_between_calls_is_reopened_and_a_changed_key_still_refused(sshd):
    d, _ = sshd
    port = _free_port()
    listener = _start_sshd(d, port, "hostkey", "before")
    kh = d / "drop_known_hosts"
    kh.write_text(f"[127.0.0.1]:{port} " + " ".join((d / "hostkey.pub").read_text().split()[:2]) + "\n")
    host = Host("lo", "127.0.0.1", port=port)
    with SshPool(_settings(d, known_hosts=str(kh), host_key_policy="accept-new"), lookup=lambda a: {}) as pool:
        session = int(pool.run(host, "echo $PPID").stdout)
        os.kill(session, 9)  # sshd's process for this connection: the connection drops while idle
        assert pool.run(host, "echo back").stdout == b"back\n"  # reopened on next use
        session = int(pool.run(host, "echo $PPID").stdout)
        os.kill(listener, 15)  # the host is rebuilt: same address, a new host key
        (d / "sshd_before.pid").unlink(missing_ok=True)
        listener = _start_sshd(d, port, "other", "after")
        os.kill(session, 9)
        with pytest.raises(HostError) as e:
            pool.run(host, "echo never")
        assert e.value.kind == "host_key_changed"
    os.kill(listener, 15)
