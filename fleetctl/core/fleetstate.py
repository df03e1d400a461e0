"""What fleetctl has done to the fleet: hosts it put into service and hosts it drained.

The records live in ``<state>/state.json`` as versioned JSON::

    {"schema": "fleetctl.state/v1",
     "serving": {"gpu-a01": {"url": ..., "profile": ..., "image": ..., "revision": ..., "since": ...}},
     "drained": {"gpu-a03": {"reason": ..., "by": ..., "at": ...}}}

The router's intended upstreams are derived from them: serving hosts that are not drained. A serving URL always
names its port (fleetctl writes ``http://ADDRESS:PORT``); one without is refused when the file is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from fleetctl.errors import UsageError

STATE_SCHEMA = "fleetctl.state/v1"


class StateError(ValueError):
    """A state document that is not one: the message says what is wrong."""


@dataclass(frozen=True)
class ServingRecord:
    """A host that fleetctl put into service, and what it serves there."""

    host: str
    url: str
    profile: str
    image: str
    revision: str
    since: str
    model: str = ""  # the model it serves, as /v1/models names it

    def to_dict(self) -> dict[str, str]:
        return {
            "url": self.url,
            "profile": self.profile,
            "image": self.image,
            "revision": self.revision,
            "since": self.since,
            "model": self.model,
        }


@dataclass(frozen=True)
class DrainRecord:
    """A host taken out of service on purpose: why, by whom and when."""

    host: str
    reason: str
    by: str
    at: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "by": self.by, "at": self.at}


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted((d or {}).items())))


@dataclass(frozen=True)
class FleetState:
    """Both record sets, keyed by host name. Immutable: the ``with_``/``without_`` methods return new states."""

    serving: Mapping[str, ServingRecord] = field(default_factory=_frozen)
    drained: Mapping[str, DrainRecord] = field(default_factory=_frozen)

    def __post_init__(self) -> None:
        object.__setattr__(self, "serving", _frozen(self.serving))
        object.__setattr__(self, "drained", _frozen(self.drained))

    def is_drained(self, host: str) -> bool:
        return host in self.drained

    def with_serving(self, record: ServingRecord) -> FleetState:
        return replace(self, serving={**self.serving, record.host: record})

    def without_serving(self, host: str) -> FleetState:
        return replace(self, serving={h: r for h, r in self.serving.items() if h != host})

    def with_drained(self, record: DrainRecord) -> FleetState:
        return replace(self, drained={**self.drained, record.host: record})

    def without_drained(self, host: str) -> FleetState:
        return replace(self, drained={h: r for h, r in self.drained.items() if h != host})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "serving": {h: r.to_dict() for h, r in self.serving.items()},
            "drained": {h: r.to_dict() for h, r in self.drained.items()},
        }

    @classmethod
    def from_dict(cls, doc: Any) -> FleetState:
        """A state from its JSON document, or StateError saying what is wrong with it."""
        if not isinstance(doc, dict) or doc.get("schema") != STATE_SCHEMA:
            raise StateError(f"not a {STATE_SCHEMA} document")
        serving = _records(doc, "serving", _serving_record)
        drained = _records(doc, "drained", _drain_record)
        return cls(serving=serving, drained=drained)


def _records(doc: dict[str, Any], key: str, build: Callable[[str, Any], Any]) -> dict[str, Any]:
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise StateError(f"{key} must be an object keyed by host name")
    return {host: build(host, fields) for host, fields in table.items()}


def _strings(section: str, host: str, fields: Any, names: tuple[str, ...]) -> dict[str, str]:
    if not host:
        raise StateError(f"{section}: a host name is empty")
    if not isinstance(fields, dict):
        raise StateError(f"{section}.{host} must be an object")
    missing = [n for n in names if not isinstance(fields.get(n), str)]
    if missing:
        raise StateError(f"{section}.{host}: {', '.join(missing)} must be string(s)")
    return {n: fields[n] for n in names}


def _serving_record(host: str, fields: Any) -> ServingRecord:
    values = _strings("serving", host, fields, ("url", "profile", "image", "revision", "since"))
    model = fields.get("model", "")
    if not isinstance(model, str):
        raise StateError(f"serving.{host}: model must be a string")
    values["model"] = model
    if not values["url"].startswith(("http://", "https://")):
        raise StateError(f"serving.{host}: url must start with http:// or https://, not {values['url']!r}")
    try:
        port = urlsplit(values["url"]).port
    except ValueError as e:
        raise StateError(f"serving.{host}: url {values['url']!r} has a bad port ({e})") from e
    if port is None:
        raise StateError(f"serving.{host}: url {values['url']!r} has no port (fleetctl writes http://ADDRESS:PORT)")
    return ServingRecord(host=host, **values)


def _drain_record(host: str, fields: Any) -> DrainRecord:
    return DrainRecord(host=host, **_strings("drained", host, fields, ("reason", "by", "at")))


def intended_upstreams(state: FleetState) -> set[str]:
    """The router's upstreams as fleetctl intends them: every serving URL except drained hosts'."""
    return {r.url for h, r in state.serving.items() if h not in state.drained}


def worker_url(address: str, port: int) -> str:
    """``http://ADDR:PORT`` for a vLLM worker; an IPv6 address goes in brackets."""
    bare = address.strip("[]")
    try:
        is_v6 = ipaddress.ip_address(bare).version == 6
    except ValueError:
        is_v6 = False  # a host name
    if is_v6:
        return f"http://[{bare.replace('%', '%25')}]:{port}"  # a zone id's % is escaped in a URL
    return f"http://{address}:{port}"


DEFAULT_PORTS = {"http": 80, "https": 443}


def url_port(url: str) -> int:
    """The port a URL names, or its scheme's default (http 80, https 443); ValueError for a bad port or a URL
    that has neither."""
    parts = urlsplit(url)
    port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    if port is not None:
        return port
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r} names no port and no http(s) scheme")
    return DEFAULT_PORTS[parts.scheme]


def serving_after_drain(state: FleetState, names: Iterable[str]) -> int:
    """How many upstreams the router is meant to hold once ``names`` are drained too."""
    out = set(state.drained) | set(names)
    return len({r.url for h, r in state.serving.items() if h not in out})


def check_min_serving(state: FleetState, names: list[str], min_serving: int, *, force: bool) -> int:
    """Hosts left serving after draining ``names``; UsageError below ``min_serving`` unless ``force``."""
    left = serving_after_drain(state, names)
    if left < min_serving and not force:
        raise UsageError(
            f"draining {', '.join(names)} would leave {left} host(s) serving, below [router] "
            f"min_serving = {min_serving}",
            hint="use --force if you mean it",
        )
    return left
