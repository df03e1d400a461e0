"""Where and how to reach a host over SSH: the fleet file's settings merged over ssh_config, as data.

Pure: the caller passes what ``ssh_config`` says for an alias (a ``lookup`` function returning paramiko's
lowercased dict); this module decides. Fleet-file settings win over ssh_config; ssh_config wins over defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.fleet import Host, SshSettings

Lookup = Callable[[str], Mapping[str, Any]]


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


def resolve_target(host: Host, settings: SshSettings, lookup: Lookup, *, accept_new: bool = False) -> Target:
    """The full route to ``host``: its endpoint and any ProxyJump chain, each hop resolved through ssh_config."""
    cfg = lookup(host.address)
    endpoint = _endpoint(host.address, cfg, user=settings.user, port=host.port, identity=settings.identity_file)
    jump_spec = settings.proxy_jump or _config_value(cfg, "proxyjump")
    if endpoint.proxy_command and not settings.proxy_jump:
        jump_spec = None  # ProxyCommand in ssh_config: it is the route
    jumps = tuple(_jump_endpoint(spec, lookup, settings) for spec in parse_jump_chain(jump_spec))
    return Target(
        endpoint=endpoint if not jumps else _without_proxy_command(endpoint),
        jumps=jumps,
        known_hosts=settings.known_hosts or _first(cfg.get("userknownhostsfile")) or "~/.ssh/known_hosts",
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
            raise ValueError(f"empty hop in ProxyJump {spec!r}")
        user, _, rest = part.removeprefix("ssh://").rpartition("@")
        name, port = _split_port(rest)
        hops.append((user or None, name, port))
    return hops


def _split_port(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):  # [v6addr]:port
        addr, _, tail = hostport[1:].partition("]")
        return addr, int(tail[1:]) if tail.startswith(":") else None
    if hostport.count(":") == 1:
        name, _, port = hostport.partition(":")
        return name, int(port)
    return hostport, None


def _jump_endpoint(hop: tuple[str | None, str, int | None], lookup: Lookup, settings: SshSettings) -> Endpoint:
    user, name, port = hop
    cfg = lookup(name)
    return _endpoint(name, cfg, user=user or settings.user, port=port, identity=settings.identity_file)


def _endpoint(
    alias: str, cfg: Mapping[str, Any], *, user: str | None, port: int | None, identity: str | None
) -> Endpoint:
    identities = (identity,) if identity else tuple(cfg.get("identityfile") or ())
    return Endpoint(
        alias=alias,
        hostname=_config_value(cfg, "hostname") or alias,
        port=port or int(_config_value(cfg, "port") or 22),
        user=user or _config_value(cfg, "user"),
        identity_files=tuple(identities),
        proxy_command=_config_value(cfg, "proxycommand"),
    )


def _without_proxy_command(e: Endpoint) -> Endpoint:
    return Endpoint(e.alias, e.hostname, e.port, e.user, e.identity_files, None)


def _config_value(cfg: Mapping[str, Any], key: str) -> str | None:
    value = cfg.get(key)
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    return _first(value)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value
