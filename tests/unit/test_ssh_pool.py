"""The SSH pool with fake connections: reopening dropped ones, jump hosts shared without a global lock,
a jump host's failure remembered, and a connection lost mid-command reported as ``disconnected``."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest

from fleetctl.core.fleet import Host, SshSettings
from fleetctl.errors import HostError
from fleetctl.services.fanout import fan_out
from fleetctl.transport import ssh
from fleetctl.transport.ssh import SshPool, run_command

GUARD_S = 10  # only bounds a hang if the code under test deadlocks; no assertion depends on it


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeClient:
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport = FakeTransport()
        self.closed = False

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.closed = True
        self.transport.active = False


class FakeNetwork:
    """Stands in for connect_endpoint/_open_tunnel: counts connects per hop, can block or fail a hop."""

    def __init__(self) -> None:
        self.connects: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.failures: dict[str, HostError] = {}
        self.lock = threading.Lock()

    def connect(self, endpoint, target, known, sock=None, host=None):
        with self.lock:
            self.connects[endpoint.hostname] = self.connects.get(endpoint.hostname, 0) + 1
        self.started.setdefault(endpoint.hostname, threading.Event()).set()
        gate = self.gates.get(endpoint.hostname)
        if gate is not None:
            assert gate.wait(GUARD_S)
        if endpoint.hostname in self.failures:
            raise self.failures[endpoint.hostname]
        return FakeClient(endpoint.hostname)

    def tunnel(self, jump, endpoint, name, timeout_s):
        return object()


@pytest.fixture
def net(monkeypatch):
    network = FakeNetwork()
    monkeypatch.setattr(ssh, "connect_endpoint", network.connect)
    monkeypatch.setattr(ssh, "_open_tunnel", network.tunnel)
    return network


CONFIG = {f"far{i}": {"proxyjump": "bastion"} for i in range(8)} | {"other-far": {"proxyjump": "bastion2"}}


def pool() -> SshPool:
    return SshPool(SshSettings(user="ops"), lookup=lambda alias: CONFIG.get(alias, {}))


def test_a_dropped_connection_is_opened_again_on_next_use(net):
    p, host = pool(), Host("h1", "h1")
    first = p.client(host)
    assert p.client(host) is first and net.connects["h1"] == 1
    first.transport.active = False  # the connection dropped
    second = p.client(host)
    assert second is not first and first.closed and net.connects["h1"] == 2


def test_reopening_still_refuses_a_changed_host_key(net):
    p, host = pool(), Host("h1", "h1")
    p.client(host).transport.active = False
    net.failures["h1"] = HostError("h1", "host_key_changed", "host key for h1 changed; refusing to connect")
    with pytest.raises(HostError) as e:
        p.client(host)
    assert e.value.kind == "host_key_changed"


def test_hosts_behind_one_jump_host_share_one_connect(net):
    hosts = [Host(f"far{i}", f"far{i}") for i in range(8)]
    results = {h.name: outcome for h, outcome in fan_out(hosts, pool().client, forks=8)}
    assert all(isinstance(c, FakeClient) for c in results.values())
    assert net.connects["bastion"] == 1 and all(net.connects[h.name] == 1 for h in hosts)


def test_a_jump_host_failure_is_remembered_and_given_to_every_host_behind_it(net):
    net.failures["bastion"] = HostError("bastion", "unreachable", "cannot reach bastion:22: connection refused")
    hosts = [Host(f"far{i}", f"far{i}") for i in range(8)]
    results = {h.name: outcome for h, outcome in fan_out(hosts, pool().client, forks=8)}
    assert net.connects["bastion"] == 1
    for host, outcome in results.items():
        assert isinstance(outcome, HostError) and outcome.host == host and outcome.kind == "unreachable"
        assert outcome.reason == "via jump host bastion: cannot reach bastion:22: connection refused"
    assert not any(name.startswith("far") for name in net.connects)


def test_hosts_without_a_jump_and_behind_another_jump_never_wait_on_a_slow_one(net):
    net.gates["bastion"] = threading.Event()  # bastion's connect hangs until released
    p = pool()
    with ThreadPoolExecutor(4) as ex:
        behind = ex.submit(p.client, Host("far0", "far0"))
        assert net.started.setdefault("bastion", threading.Event()).wait(GUARD_S)
        direct = ex.submit(p.client, Host("near", "near"))
        elsewhere = ex.submit(p.client, Host("other-far", "other-far"))
        assert direct.result(GUARD_S).name == "near"  # would time out if it queued behind bastion's connect
        assert elsewhere.result(GUARD_S).name == "other-far"
        assert not behind.done()
        net.gates["bastion"].set()
        assert behind.result(GUARD_S).name == "far0"


def test_a_dropped_jump_host_is_reconnected_not_remembered_as_failed(net):
    p = pool()
    p.client(Host("far0", "far0"))
    p._hops[next(iter(p._hops))].client.transport.active = False  # the bastion connection dropped
    p.client(Host("far1", "far1"))
    assert net.connects["bastion"] == 2


class FakeChannel:
    """A session channel whose command prints ``out`` and exits ``rc`` (-1: no exit status came)."""

    def __init__(self, transport: FakeTransport, out: bytes, rc: int, drop: bool) -> None:
        self.transport, self.out, self.rc, self.drop = transport, out, rc, drop

    def settimeout(self, t: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        if self.drop:
            self.transport.active = False  # the connection goes while the command runs

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.out)

    def makefile_stderr(self, mode: str) -> io.BytesIO:
        return io.BytesIO(b"")

    def recv_exit_status(self) -> int:
        return self.rc

    def get_transport(self) -> FakeTransport:
        return self.transport


class ExecTransport(FakeTransport):
    def __init__(self, out: bytes, rc: int, drop: bool, fail: Exception | None) -> None:
        super().__init__()
        self.out, self.rc, self.drop, self.fail, self.opened = out, rc, drop, fail, 0

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        self.opened += 1
        if self.fail is not None:
            raise self.fail
        return FakeChannel(self, self.out, self.rc, self.drop)


class ExecClient(FakeClient):
    def __init__(self, out: bytes = b"partial", rc: int = -1, drop: bool = True, fail: Exception | None = None):
        super().__init__("h")
        self.transport = ExecTransport(out, rc, drop, fail)


def test_connection_lost_mid_command_is_disconnected_not_a_result():
    with pytest.raises(HostError) as e:
        run_command(ExecClient(), "gpu1", "python3 -", stdin=b"x", timeout_s=5)
    assert e.value.kind == "disconnected" and "'python3'" in e.value.reason and "repeat" in (e.value.hint or "")


def test_exec_on_a_dead_session_is_disconnected():
    with pytest.raises(HostError) as e:
        run_command(ExecClient(fail=EOFError()), "g", "ls", stdin=None, timeout_s=5)
    assert e.value.kind == "disconnected"


def test_a_refused_channel_on_a_live_connection_is_not_a_disconnect():
    with pytest.raises(HostError) as e:
        run_command(ExecClient(fail=paramiko.ChannelException(2, "Connect failed")), "g", "ls", stdin=None, timeout_s=5)
    assert e.value.kind == "unreachable"


def test_a_command_killed_by_a_signal_on_a_live_connection_is_its_result():
    result = run_command(ExecClient(out=b"out", rc=-1, drop=False), "g", "sleep 9", stdin=None, timeout_s=5)
    assert (result.rc, result.stdout) == (-1, b"out")


def test_a_connection_found_dead_before_the_command_started_is_reopened_and_the_command_runs(monkeypatch):
    made: list[ExecClient] = []

    def connect(endpoint, target, known, sock=None, host=None):
        made.append(ExecClient(out=b"ok", rc=0, drop=False, fail=None if made else EOFError()))
        return made[-1]

    monkeypatch.setattr(ssh, "connect_endpoint", connect)
    result = pool().run(Host("h", "h"), "echo ok")
    assert (result.rc, result.stdout, len(made)) == (0, b"ok", 2) and made[0].closed


def test_release_closes_a_hosts_connection_and_the_next_use_opens_one(net):
    p, host = pool(), Host("h1", "h1")
    first = p.client(host)
    p.release(host)
    assert first.closed and p.client(host) is not first and net.connects["h1"] == 2
    p.release(Host("never", "never"))  # nothing open: nothing to do
