"""The front door: HAProxy in front of vllm-router. Settings, client keys and capacity as data; pure, no I/O.

Clients reach only the inference paths through the door; vllm-router (and its unauthenticated admin API) listens
on loopback. ``core/door_config.py`` renders HAProxy's configuration from what is decided here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from fleetctl.errors import ConfigError

INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models")
HEALTH_PATH = "/health"
DEFAULT_MAX_QUEUE_S = 30.0
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's own default for --max-num-seqs
DOOR_KEYS = ("listen", "tls_cert", "keys_file", "max_queue_s")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DoorSettingError(ValueError):
    """A ``[router]`` value the door cannot use; ``key`` is where the fleet file should point."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class DoorSettings:
    """``[router]``'s door keys: where clients connect, optional TLS and client keys, how long a request queues."""

    host: str
    port: int
    tls_cert: str | None = None
    keys_file: str | None = None
    max_queue_s: float = DEFAULT_MAX_QUEUE_S

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def beside(self, folder: str) -> DoorSettings:
        """These settings with a relative ``tls_cert`` made relative to ``folder`` (the fleet file's), as
        ``keys_file`` is; HAProxy would otherwise read it from wherever fleetctl happened to be started."""
        if self.tls_cert is None or posixpath.isabs(self.tls_cert):
            return self
        return replace(self, tls_cert=posixpath.join(folder, self.tls_cert))


def door_settings(router: Mapping[str, Any]) -> DoorSettings | None:
    """The door declared in the ``[router]`` table's values, None without ``listen``; DoorSettingError otherwise.

    vllm-router's ``url`` must be loopback whether or not a door is declared: its admin API has no
    authentication, so clients must come in through ``listen``.
    """
    url = router.get("url")
    if isinstance(url, str) and not is_loopback_url(url):
        raise DoorSettingError(
            "url",
            f"router.url {url!r} is not a loopback address: vllm-router's admin API has no authentication; "
            'keep it on 127.0.0.1 and give clients the front door with listen = "0.0.0.0:8080"',
        )
    listen = router.get("listen")
    if listen is None:
        return None
    if not isinstance(listen, str):
        raise DoorSettingError("listen", 'router.listen must be a string "HOST:PORT"')
    host, port = parse_listen(listen)
    return DoorSettings(
        host=host,
        port=port,
        tls_cert=_optional_path(router, "tls_cert"),
        keys_file=_optional_path(router, "keys_file"),
        max_queue_s=_queue_s(router.get("max_queue_s", DEFAULT_MAX_QUEUE_S)),
    )


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port); DoorSettingError ``listen`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port) if sep and port.isdigit() else 0
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise DoorSettingError("listen", f'router.listen {text!r} must be "ADDRESS:PORT" with an IP address')
    return host, number


def _optional_path(router: Mapping[str, Any], key: str) -> str | None:
    value = router.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\n" in value or " " in value:
        raise DoorSettingError(key, f"router.{key} must be a file path without spaces")
    return value


def _queue_s(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) <= 3600:
        raise DoorSettingError("max_queue_s", "router.max_queue_s must be a number of seconds in (0, 3600]")
    return float(value)


# --- client keys -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKey:
    """One client of the door: its key only as a sha256 hex digest, and its limits."""

    name: str
    key_sha256: str
    requests_per_minute: int
    max_concurrent: int

    @property
    def retry_after_s(self) -> int:
        """Seconds until the one-minute window frees one request, rounded up (at least 1)."""
        return max(1, -(-60 // self.requests_per_minute))


def hash_key(key: str) -> str:
    """How a client key is stored: sha256 of its UTF-8 bytes, lower-case hex (what HAProxy computes)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(doc: Mapping[str, Any], path: str, lines: Sequence[int | None] = ()) -> tuple[ClientKey, ...]:
    """The ``[[client]]`` entries of a keys file (parsed TOML); ConfigError ``path:LINE`` for a bad one.

    ``lines[i]`` is where the i-th ``[[client]]`` starts (see ``client_lines``).
    """
    extra = sorted(set(doc) - {"client"})
    if extra:
        raise ConfigError(f"unknown table or key {extra[0]!r} (only [[client]] entries)", path=path)
    entries = doc.get("client", [])
    if not isinstance(entries, list):
        raise ConfigError("client must be an array of tables ([[client]])", path=path)
    clients: list[ClientKey] = []
    for i, entry in enumerate(entries):
        line = lines[i] if i < len(lines) else None
        try:
            clients.append(_client(entry, clients))
        except ValueError as e:
            raise ConfigError(f"client {i + 1}: {e}", path=path, line=line) from e
    return tuple(clients)


def client_lines(text: str) -> list[int]:
    """The 1-based line of each ``[[client]]`` header in a keys file's text."""
    return [n for n, line in enumerate(text.splitlines(), 1) if re.match(r"\s*\[\[\s*client\s*\]\]", line)]


def _client(entry: Any, seen: Iterable[ClientKey]) -> ClientKey:
    if not isinstance(entry, Mapping):
        raise ValueError("must be a table")
    unknown = sorted(set(entry) - {"name", "key_sha256", "requests_per_minute", "max_concurrent"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    name, digest = entry.get("name"), entry.get("key_sha256")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("name must be 1-64 letters, digits, '.', '_' or '-'")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise ValueError("key_sha256 must be 64 lower-case hex digits (the sha256 of the key, never the key)")
    for other in seen:
        if other.name == name or other.key_sha256 == digest:
            raise ValueError(f"{'name' if other.name == name else 'key'} already used by client {other.name}")
    return ClientKey(
        name, digest, _positive_int(entry, "requests_per_minute", 600), _positive_int(entry, "max_concurrent", 16)
    )


def _positive_int(entry: Mapping[str, Any], key: str, default: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ValueError(f"{key} must be a whole number from 1 to 1000000")
    return value


# --- capacity ----------------------------------------------------------------------------------------------


def max_num_seqs(args: Sequence[str]) -> int:
    """A host's slots: vLLM's ``--max-num-seqs`` in its ``[serve] args`` (vLLM's default 256 when absent)."""
    for i, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--max-num-seqs=") else None
        if arg == "--max-num-seqs" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None and value.isdigit() and int(value) > 0:
            return int(value)
    return DEFAULT_MAX_NUM_SEQS


def fleet_slots(serving_args: Mapping[str, Sequence[str]]) -> int:
    """The fleet's capacity: the slots of every serving, not drained host (host → its ``[serve] args``).

    Never 0: HAProxy reads ``maxconn 0`` as "no limit"; with no host serving, one request at a time reaches
    vllm-router, which answers 503 itself.
    """
    return max(1, sum(max_num_seqs(args) for args in serving_args.values()))
