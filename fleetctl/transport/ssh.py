"""SSH over paramiko: verified host keys, ProxyJump chains, one connection per host reused within a command.

Library exceptions become ``HostError`` with a stable kind: unreachable, timeout, auth, host_key_unknown,
host_key_changed, disconnected. Jump hosts are shared: twenty targets behind one bastion open one bastion
connection, and hosts elsewhere never wait for it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleetctl.core.fleet import Host, SshSettings
from fleetctl.core.sshtarget import Endpoint, SshConfigError, Target, resolve_target
from fleetctl.errors import ConfigError, HostError
from fleetctl.transport.paramiko_lite import paramiko
from fleetctl.transport.sshconfig import load_ssh_config, local_info

if TYPE_CHECKING:
    from paramiko import SSHClient

# paramiko logs transport errors itself; fleetctl reports them as host errors (logging is for --debug).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class RunResult:
    rc: int
    stdout: bytes
    stderr: bytes


class KnownHosts:
    """One known_hosts file for every connection of a command: parsed once (not once per host), and each
    client gets only its own host's keys; accept-new appends are serialized."""

    def __init__(self, path: str) -> None:
        self.path = os.path.expanduser(path)
        self._lock = threading.Lock()
        self._keys: paramiko.HostKeys | None = None

    def _parsed(self) -> paramiko.HostKeys:
        with self._lock:
            if self._keys is None:
                self._keys = paramiko.HostKeys(self.path) if os.path.exists(self.path) else paramiko.HostKeys()
            return self._keys

    def load_into(self, client: SSHClient, name: str) -> None:
        """Give ``client`` the known keys of ``name`` (``host`` or ``[host]:port``, as paramiko looks it up)."""
        known = self._parsed().lookup(name)
        if known:
            target = client.get_host_keys()
            for key_type, key in known.items():
                target.add(name, key_type, key)

    def record(self, name: str, key: paramiko.PKey) -> None:
        parsed = self._parsed()
        with self._lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as f:
                f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
                f.flush()
                os.fsync(f.fileno())
            parsed.add(name, key.get_name(), key)


class _UnknownKey(Exception):
    def __init__(self, name: str, key: paramiko.PKey) -> None:
        super().__init__(name)
        self.name, self.key = name, key


class _NoBanner(Exception):
    pass


class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown key: refuse (strict) or record it (accept-new). Changed keys never reach here: paramiko refuses."""

    def __init__(self, known: KnownHosts, accept_new: bool) -> None:
        self.known, self.accept_new = known, accept_new

    def missing_host_key(self, client: SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept_new:
            raise _UnknownKey(hostname, key)
        self.known.record(hostname, key)


class _QuietTransport(paramiko.Transport):
    """paramiko's transport thread wakes every 0.1 s to see whether it was closed here; closing does not wait
    for it, so once a second is enough, and an open connection then costs a tenth of the CPU while it waits
    for a slow host. (A remote close or a dropped connection is seen at once either way.)"""

    _active_check_timeout = 1.0


def connect_endpoint(
    endpoint: Endpoint, target: Target, known: KnownHosts, sock: Any = None, host: str | None = None
) -> SSHClient:
    """An authenticated client for one hop, or HostError naming what went wrong."""
    name = host or endpoint.alias
    client = paramiko.SSHClient()
    # paramiko checks these (changed key: refused) before the policy, and prefers their key type
    known.load_into(client, endpoint.hostname if endpoint.port == 22 else f"[{endpoint.hostname}]:{endpoint.port}")
    client.set_missing_host_key_policy(_Policy(known, target.accept_new))
    if sock is None and endpoint.proxy_command:
        sock = paramiko.ProxyCommand(endpoint.proxy_command)
    try:
        client.connect(
            endpoint.hostname,
            port=endpoint.port,
            username=endpoint.user,
            sock=sock,
            # paramiko takes a list of key files too; types-paramiko's stub says `str | None` only
            key_filename=[os.path.expanduser(p) for p in endpoint.identity_files] or None,  # type: ignore[arg-type]
            timeout=target.timeout_s,
            banner_timeout=target.timeout_s,
            auth_timeout=target.timeout_s,
            transport_factory=_QuietTransport,
        )
    except Exception as e:
        transport = client.get_transport()
        client.close()
        if transport is not None and not transport.remote_version and isinstance(e, paramiko.SSHException):
            e = _NoBanner(str(e))  # paramiko reports a banner timeout as "No existing session"
        raise translate_error(name, endpoint, e) from e
    return client


def translate_error(name: str, endpoint: Endpoint, e: Exception) -> HostError:
    where = f"{endpoint.user + '@' if endpoint.user else ''}{endpoint.hostname}:{endpoint.port}"
    if isinstance(e, _UnknownKey):
        return HostError(
            name,
            "host_key_unknown",
            f"host key for {e.name} is not in known_hosts ({e.key.get_name()} {fingerprint(e.key)})",
            hint="verify the key, then add it to known_hosts or use --accept-new-host-keys",
        )
    if isinstance(e, paramiko.BadHostKeyException):
        return HostError(
            name,
            "host_key_changed",
            f"host key for {e.hostname} changed: known_hosts has "
            f"{e.expected_key.get_name()}, the host offered {e.key.get_name()} "
            f"{fingerprint(e.key)}; refusing to connect",
            hint="if the host was rebuilt, remove its old key from known_hosts",
        )
    if isinstance(e, paramiko.AuthenticationException):
        return HostError(name, "auth", f"authentication failed for {where}: {e}")
    if isinstance(e, (socket.timeout, TimeoutError)):
        return HostError(name, "timeout", f"no answer from {where} within the connect timeout")
    if isinstance(e, _NoBanner) or (isinstance(e, paramiko.SSHException) and "banner" in str(e).lower()):
        return HostError(name, "timeout", f"{where} accepted the connection but sent no SSH banner in time")
    if isinstance(e, paramiko.ChannelException):
        return HostError(name, "unreachable", f"the jump host could not reach {where}: {e}")
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
        first = next(iter(e.errors.values()), None)
        if isinstance(first, (socket.timeout, TimeoutError)):
            return HostError(name, "timeout", f"no answer from {where} within the connect timeout")
        reason = first.strerror if isinstance(first, OSError) and first.strerror else _oneline(e)
        return HostError(name, "unreachable", f"cannot reach {where}: {reason.lower()}")
    if isinstance(e, (OSError, paramiko.SSHException, EOFError)):
        return HostError(name, "unreachable", f"cannot reach {where}: {_oneline(e)}")
    raise e


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it (``SHA256:...``)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _oneline(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


@dataclass
class _Hop:
    """One jump host of a command: connected once for every host behind it, its failure remembered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    client: SSHClient | None = None
    error: HostError | None = None


class SshPool(AbstractContextManager["SshPool"]):
    """Connections for one command: one per host, jump hosts shared, all closed on exit.

    A connection that dropped is opened again on next use (host keys verified again: a changed key is still
    refused). Each jump host has its own lock: hosts behind it wait for its one connect, hosts elsewhere never do,
    and once it failed the hosts behind it fail at once with its reason."""

    def __init__(
        self, settings: SshSettings, *, accept_new: bool = False, lookup: Callable[[str], dict[str, Any]] | None = None
    ) -> None:
        self.settings, self.accept_new = settings, accept_new
        self.lookup = lookup or load_ssh_config()
        self._local = local_info()
        self._known: dict[str, KnownHosts] = {}
        self._clients: dict[str, SSHClient] = {}
        self._targets: dict[str, Target] = {}
        self._hops: dict[tuple[Endpoint, ...], _Hop] = {}
        self._lock = threading.Lock()  # guards the dictionaries only; no connect ever happens under it
        self._host_locks: dict[str, threading.Lock] = {}

    def target(self, host: Host) -> Target:
        """The route to ``host`` (resolved once); ConfigError (exit 2) when ssh_config says what OpenSSH would
        refuse, or what fleetctl refuses (``Match exec``)."""
        found = self._targets.get(host.name)
        if found is None:
            try:
                found = resolve_target(host, self.settings, self.lookup, accept_new=self.accept_new, local=self._local)
            except SshConfigError as e:
                raise ConfigError(f"ssh_config for {host.address}: {e}") from e
            self._targets[host.name] = found
        return found

    def client(self, host: Host) -> SSHClient:
        """The host's open connection, opened (again) if there is none or it dropped."""
        with self._lock:
            host_lock = self._host_locks.setdefault(host.name, threading.Lock())
        with host_lock:
            existing = self._clients.get(host.name)
            if existing is not None and _alive(existing):
                return existing
            if existing is not None:
                existing.close()
            client = self._connect(host, self.target(host))
            self._clients[host.name] = client
            return client

    def _connect(self, host: Host, target: Target) -> SSHClient:
        known = self._known_hosts(target.known_hosts)
        sock = None
        if target.jumps:
            jump = self._jump_client(target, known, host.name)
            sock = _open_tunnel(jump, target.endpoint, host.name, target.timeout_s)
        return connect_endpoint(target.endpoint, target, known, sock=sock, host=host.name)

    def _jump_client(self, target: Target, known: KnownHosts, name: str) -> SSHClient:
        """The client for the last hop of the chain, connecting each hop once (per chain) as needed."""
        client = None
        for depth in range(1, len(target.jumps) + 1):
            chain = target.jumps[:depth]
            hop = self._hop(chain)
            with hop.lock:
                if hop.error is None and (hop.client is None or not _alive(hop.client)):
                    try:
                        sock = None if client is None else _open_tunnel(client, chain[-1], name, target.timeout_s)
                        hop.client = connect_endpoint(chain[-1], target, known, sock=sock)
                    except HostError as failure:
                        hop.error = failure
                if hop.error is not None:
                    why = hop.error
                    raise HostError(name, why.kind, f"via jump host {chain[-1].alias}: {why.reason}", hint=why.hint)
                client = hop.client
        assert client is not None
        return client

    def _hop(self, chain: tuple[Endpoint, ...]) -> _Hop:
        with self._lock:
            return self._hops.setdefault(chain, _Hop())

    def _known_hosts(self, path: str) -> KnownHosts:
        with self._lock:
            if path not in self._known:
                self._known[path] = KnownHosts(path)
            return self._known[path]

    def run(self, host: Host, command: str, *, stdin: bytes | None = None, timeout_s: float = 120) -> RunResult:
        """Run ``command`` on ``host``; a connection lost meanwhile is ``HostError(kind="disconnected")``.

        A connection found dead before the command started (it dropped while idle) is reopened at once: nothing
        ran, so nothing is repeated."""
        client = self.client(host)
        try:
            channel = open_channel(client, host.name, timeout_s)
        except _NotStarted:
            client.close()  # so that client() opens a new one even if paramiko has not noticed yet
            channel = open_channel(self.client(host), host.name, timeout_s)
        return run_on_channel(channel, host.name, command, stdin=stdin, timeout_s=timeout_s)

    def release(self, host: Host) -> None:
        """Close ``host``'s connection now (a command done with a host; jump hosts stay for the others).

        An open paramiko connection wakes its thread ten times a second: holding a finished host's costs CPU."""
        with self._lock:
            client = self._clients.pop(host.name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        hops = [hop.client for hop in self._hops.values() if hop.client is not None]
        for client in [*self._clients.values(), *reversed(hops)]:
            client.close()
        self._clients.clear()
        self._hops.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alive(client: SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def _open_tunnel(jump: SSHClient, endpoint: Endpoint, name: str, timeout_s: float) -> paramiko.Channel:
    transport = jump.get_transport()
    assert transport is not None
    try:
        return transport.open_channel(
            "direct-tcpip", dest_addr=(endpoint.hostname, endpoint.port), src_addr=("127.0.0.1", 0), timeout=timeout_s
        )
    except Exception as e:
        raise translate_error(name, endpoint, e) from e


def run_command(client: SSHClient, name: str, command: str, *, stdin: bytes | None, timeout_s: float) -> RunResult:
    """Run ``command``, feed ``stdin``, read both streams to the end. A stall past ``timeout_s`` is ``timeout``;
    the connection lost before the command's exit status arrived is ``disconnected`` (repeat the step)."""
    return run_on_channel(open_channel(client, name, timeout_s), name, command, stdin=stdin, timeout_s=timeout_s)


class _NotStarted(HostError):
    """The connection was found dead while opening a channel: nothing ran on the host."""


def open_channel(client: SSHClient, name: str, timeout_s: float) -> paramiko.Channel:
    """A new session channel; ``_NotStarted`` (a ``disconnected`` HostError) when the connection had gone."""
    transport = client.get_transport()
    try:
        if transport is None:
            raise paramiko.SSHException("SSH session not active")
        channel = transport.open_session(timeout=timeout_s)
    except paramiko.ChannelException as e:  # the host refused a new channel (e.g. MaxSessions): it is still up
        raise HostError(name, "unreachable", f"the host refused an SSH channel: {_oneline(e)}") from e
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise _NotStarted(name, "disconnected", f"SSH connection lost: {_oneline(e)}") from e
    channel.settimeout(timeout_s)
    return channel


def run_on_channel(
    channel: paramiko.Channel, name: str, command: str, *, stdin: bytes | None, timeout_s: float
) -> RunResult:
    what = command.split()[0] if command.split() else "command"
    try:
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        err_box: list[bytes] = []
        err_file = channel.makefile_stderr("rb")
        reader = threading.Thread(target=lambda: err_box.append(err_file.read()), daemon=True)
        reader.start()
        out = channel.makefile("rb").read()
        reader.join(timeout_s)
        rc = channel.recv_exit_status()
    except TimeoutError as e:
        raise HostError(name, "timeout", f"no answer to {what!r} within {timeout_s:g}s") from e
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise _disconnected(name, what, _oneline(e)) from e
    if rc == -1 and not channel.get_transport().is_active():  # no exit status: the connection went
        raise _disconnected(name, what, "the connection closed")
    return RunResult(rc=rc, stdout=out, stderr=err_box[0] if err_box else b"")


def _disconnected(name: str, what: str, detail: str) -> HostError:
    return HostError(
        name,
        "disconnected",
        f"SSH connection lost while running {what!r}: {detail}",
        hint="the next use of this host opens a new connection; repeat the step",
    )
