"""Where and how to reach a host over SSH: the fleet file's settings merged over ssh_config, as data.

Pure: the caller passes what ``ssh_config`` says for an alias (a ``lookup`` function returning paramiko's
lowercased dict, values as written: no ``%`` token expanded yet); this module decides and expands the tokens as
OpenSSH does. Fleet-file settings win over ssh_config (like ``ssh``'s command-line options); ssh_config wins over
defaults.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.fleet import Host, SshSettings

Lookup = Callable[[str], Mapping[str, Any]]


class SshConfigError(ValueError):
    """An ssh_config value OpenSSH would refuse too (an unknown ``%`` token, a bad ProxyJump)."""


@dataclass(frozen=True)
class LocalInfo:
    """What ``%u``, ``%d``, ``%i``, ``%l``, ``%L`` and ``~`` stand for: the local user, home, uid, host name."""

    user: str = ""
    home: str = "~"
    uid: int = -1
    hostname: str = "localhost"


@dataclass(frozen=True)
class Endpoint:
    """One SSH hop: the address to dial, the name known_hosts is checked against, and credentials."""

    alias: str
    hostname: str
    port: int = 22
    user: str | None = None  # None: the local user
    identity_files: tuple[str, ...] = ()
    proxy_command: str | None = None


@dataclass(frozen=True)
class Target:
    endpoint: Endpoint
    jumps: tuple[Endpoint, ...] = field(default_factory=tuple)  # outermost first
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new: bool = False
    timeout_s: float = 10.0


# Which tokens each keyword accepts (ssh_config(5) of OpenSSH 9.2, "TOKENS").
HOSTNAME_TOKENS = "h"
FILE_TOKENS = "CdhikLlnpru"  # IdentityFile, UserKnownHostsFile
PROXY_TOKENS = "hnpr"  # ProxyCommand


def resolve_target(
    host: Host, settings: SshSettings, lookup: Lookup, *, accept_new: bool = False, local: LocalInfo | None = None
) -> Target:
    """The full route to ``host``: its endpoint and any ProxyJump chain, each hop resolved through ssh_config."""
    local = local or LocalInfo()
    cfg = lookup(host.address)
    endpoint = _endpoint(
        host.address, cfg, user=settings.user, port=host.port, identity=settings.identity_file, local=local
    )
    jump_spec = settings.proxy_jump or _config_value(cfg, "proxyjump")
    if endpoint.proxy_command and not settings.proxy_jump:
        jump_spec = None  # ProxyCommand in ssh_config: it is the route
    jumps = tuple(_jump_endpoint(spec, lookup, settings, local) for spec in parse_jump_chain(jump_spec))
    return Target(
        endpoint=endpoint if not jumps else _without_proxy_command(endpoint),
        jumps=jumps,
        known_hosts=settings.known_hosts or _known_hosts(cfg, endpoint, local) or "~/.ssh/known_hosts",
        accept_new=accept_new or settings.host_key_policy == "accept-new",
        timeout_s=settings.connect_timeout_s,
    )


def parse_jump_chain(spec: str | None) -> list[tuple[str | None, str, int | None]]:
    """``"ops@bastion:2222,jump2"`` → ``[("ops", "bastion", 2222), (None, "jump2", None)]``; ``none`` → []."""
    if not spec or spec.strip().lower() == "none":
        return []
    hops = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise SshConfigError(f"empty hop in ProxyJump {spec!r}")
        user, _, rest = part.removeprefix("ssh://").rpartition("@")
        name, port = _split_port(rest, spec)
        if not name or "%" in part or any(c.isspace() for c in part):
            raise SshConfigError(f"invalid ProxyJump {spec!r}")
        hops.append((user or None, name, port))
    return hops


def _split_port(hostport: str, spec: str) -> tuple[str, int | None]:
    if hostport.startswith("["):  # [v6addr]:port
        addr, _, tail = hostport[1:].partition("]")
        return addr, _port(tail[1:], spec) if tail.startswith(":") else None
    if hostport.count(":") == 1:
        name, _, port = hostport.partition(":")
        return name, _port(port, spec)
    return hostport, None


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SshConfigError(f"invalid port {text!r} in {where!r}")
    return int(text)


def _jump_endpoint(
    hop: tuple[str | None, str, int | None], lookup: Lookup, settings: SshSettings, local: LocalInfo
) -> Endpoint:
    """A jump host as ``ssh -J`` reaches it: the hop's own user/port, else its ssh_config, else the fleet's."""
    user, name, port = hop
    cfg = lookup(name)
    user = user or _config_value(cfg, "user") or settings.user
    return _endpoint(name, cfg, user=user, port=port, identity=settings.identity_file, local=local)


def _endpoint(
    alias: str, cfg: Mapping[str, Any], *, user: str | None, port: int | None, identity: str | None, local: LocalInfo
) -> Endpoint:
    hostname = expand_tokens(_config_value(cfg, "hostname") or alias, {"h": alias}, HOSTNAME_TOKENS)
    port = port or _port(_config_value(cfg, "port") or "22", f"Port for {alias}")
    user = user or _config_value(cfg, "user")
    tokens = file_tokens(alias, hostname, port, user or local.user, local, _config_value(cfg, "hostkeyalias"))
    configured = tuple(expand_path(p, tokens, local) for p in cfg.get("identityfile") or () if p.lower() != "none")
    identities = tuple(dict.fromkeys(((identity,) if identity else ()) + configured))
    proxy = _config_value(cfg, "proxycommand")
    return Endpoint(
        alias=alias,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identities,
        proxy_command=None if proxy is None else expand_tokens(proxy, tokens, PROXY_TOKENS),
    )


def file_tokens(
    alias: str, hostname: str, port: int, user: str, local: LocalInfo, host_key_alias: str | None = None
) -> dict[str, str]:
    """The ``%`` tokens of ssh_config(5) for one connection (``%C`` is SHA-1 of ``%l%h%p%r``, as OpenSSH)."""
    tokens = {
        "h": hostname,
        "n": alias,
        "p": str(port),
        "r": user,
        "d": local.home,
        "u": local.user,
        "i": str(local.uid),
        "l": local.hostname,
        "L": local.hostname.split(".")[0],
        "k": host_key_alias or alias,
    }
    tokens["C"] = hashlib.sha1((local.hostname + hostname + str(port) + user).encode()).hexdigest()
    return tokens


_TOKEN = re.compile(r"%(.?)", re.DOTALL)


def expand_tokens(value: str, tokens: Mapping[str, str], allowed: str) -> str:
    """``value`` with ``%x`` replaced as OpenSSH does; ``%%`` is ``%``; any other token is an error, as in ssh."""

    def one(m: re.Match[str]) -> str:
        t = m.group(1)
        if t == "%":
            return "%"
        if t and t in allowed and t in tokens:
            return tokens[t]
        raise SshConfigError(f"unknown token %{t} in {value!r}")

    return _TOKEN.sub(one, value)


def expand_path(value: str, tokens: Mapping[str, str], local: LocalInfo) -> str:
    """A file keyword's value: ``~`` is the local home (as ``%d``), then the file tokens."""
    value = expand_tokens(value, tokens, FILE_TOKENS)
    return local.home + value[1:] if value == "~" or value.startswith("~/") else value


def _known_hosts(cfg: Mapping[str, Any], endpoint: Endpoint, local: LocalInfo) -> str | None:
    value = _config_value(cfg, "userknownhostsfile")
    if not value or not value.split():
        return None
    user = endpoint.user or local.user
    tokens = file_tokens(endpoint.alias, endpoint.hostname, endpoint.port, user, local)
    return expand_path(value.split()[0], tokens, local)


def _without_proxy_command(e: Endpoint) -> Endpoint:
    return Endpoint(e.alias, e.hostname, e.port, e.user, e.identity_files, None)


def _config_value(cfg: Mapping[str, Any], key: str) -> str | None:
    value = _first(cfg.get(key))
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    return str(value)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value
