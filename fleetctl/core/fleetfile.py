"""The fleet file (TOML) to a Fleet. Every problem is a ConfigError that names ``FILE:LINE``.

``tomldoc.read_toml`` parses (the standard library's reader); the schema below says which tables and keys exist,
their types and allowed values, and ``core.schema`` (shared with profiles and the matrix) checks it. Lines are looked up only for an error (and the ``[[hosts]]`` headers).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
from collections.abc import Mapping
from typing import Any

from fleetctl.core.addresses import host_problem, http_url_problem, jump_problem, shown, unbracketed, user_problem
from fleetctl.core.door import DOOR_KEYS, DoorSettingError, door_settings
from fleetctl.core.fleet import Fleet, Host, MaintainSettings, Pool, RolloutSettings, RouterSettings, SshSettings
from fleetctl.core.schema import Check, Field, check_table
from fleetctl.core.selector import parse_pattern
from fleetctl.core.tomldoc import KeyLines as KeyLines  # the one TOML locator; its old home
from fleetctl.core.tomldoc import TomlDocument, read_toml, toml_type
from fleetctl.errors import UsageError


def _one_of(*choices: str) -> Check:
    names = " or ".join(f'"{c}"' for c in choices)
    return lambda v: None if v in choices else f"must be {names}, got {shown(v)}"


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}, got {v}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, got {v}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be greater than 0, got {v}"


def _non_empty_prompts(v: list[str]) -> str | None:
    return None if v and all(p.strip() for p in v) else "must be non-empty prompts (at least one)"


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _token(v: str) -> str | None:
    ok = _TOKEN.fullmatch(v)
    return None if ok else f'must be letters, digits, ".", "_" or "-" (starting with a letter or digit), got {shown(v)}'


def _command_line(v: str) -> str | None:
    """A command line as a shell would split it: one line without control characters (NUL, line breaks,
    escapes; a tab is a blank), quotes closed, not blank."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in v):
        return f"must be one command line without control characters, got {shown(v)}"
    try:
        words = shlex.split(v)
    except ValueError as e:
        return f"must be a command line a shell can split ({e}), got {shown(v)}"
    return None if words else "must name a command, got only blanks"


def _distinct(v: list[str]) -> str | None:
    twice = next((x for i, x in enumerate(v) if x in v[:i]), None)
    return None if twice is None else f'"{twice}" is listed twice'


SCHEMA: dict[str, dict[str, Field]] = {
    "fleet": {"name": Field("string")},
    "ssh": {
        "user": Field("string", user_problem),
        "identity_file": Field("string"),
        "known_hosts": Field("string"),
        "host_key_policy": Field("string", _one_of("strict", "accept-new")),
        "proxy_jump": Field("string", jump_problem),
        "connect_timeout_s": Field("number", _positive),
    },
    "router": {
        "url": Field("string", http_url_problem),
        "min_serving": Field("integer", _at_least(0)),
        "listen": Field("string"),
        "tls_cert": Field("string"),
        "keys_file": Field("string"),
        "max_queue_s": Field("number", _positive),
    },
    "rollout": {
        "rings": Field("strings", _distinct),
        "max_unavailable": Field("integer", _at_least(1)),
        "bake_s": Field("number", _at_least(0)),
        "max_error_rate": Field("number", _between(0, 1)),
        "max_ttft_p95_ratio": Field("number", _positive),
        "min_requests": Field("integer", _at_least(1)),
        "interval_s": Field("number", _positive),
        "failure_limit": Field("integer", _at_least(0)),
        "smoke_rps": Field("number", _positive),
        "max_ttft_p95_ms": Field("number", _positive),
        "smoke": Field("smoke-table"),
    },
    "maintain": {
        "reboot_command": Field("string", _command_line),
        "reboot_timeout_s": Field("number", _positive),
        "max_parallel": Field("integer", _at_least(1)),
        "sudo": Field("boolean"),
    },
}
SMOKE_FIELDS: dict[str, Field] = {"prompts": Field("strings", _non_empty_prompts)}
HOST_FIELDS: dict[str, Field] = {
    "name": Field("string", _token),
    "address": Field("string", host_problem),
    "port": Field("integer", _between(1, 65535)),
    "ring": Field("string", _token),
    "labels": Field("string-table"),
}
POOL_FIELDS: dict[str, Field] = {
    "name": Field("string", _token),
    "profile": Field("string"),
    "hosts": Field("string"),
    "min_serving": Field("integer", _at_least(0)),
}


def parse_fleet(text: str, path: str) -> Fleet:
    """The fleet declared by ``text`` (read from ``path``), or ConfigError with ``path:LINE: what is wrong``."""
    doc = read_toml(text, path)
    check_document(doc)
    hosts = build_hosts(doc)
    data = doc.data
    pools = build_pools(doc, hosts)
    return Fleet(
        name=data["fleet"]["name"],
        path=path,
        hosts=hosts,
        ssh=_settings(SshSettings, data, "ssh"),
        router=_router_settings(doc),
        rollout=_settings(RolloutSettings, data, "rollout"),
        pools=pools,
        maintain=_settings(MaintainSettings, data, "maintain"),
    )


def check_document(doc: TomlDocument) -> None:
    for key, value in doc.data.items():
        if key in ("hosts", "pools"):
            continue
        if key not in SCHEMA:
            raise doc.error(unknown_top_level(key, value), (key,))
        if not isinstance(value, dict):
            raise doc.error(f"{key}: expected a table, got {toml_type(value)}", (key,))
        check_table(doc, value, SCHEMA[key], (key,))
        if key == "rollout" and isinstance(value.get("smoke"), dict):
            check_table(doc, value["smoke"], SMOKE_FIELDS, ("rollout", "smoke"))
    if not isinstance(doc.data.get("fleet", {}).get("name"), str):
        raise doc.error('missing [fleet] name (name = "...")', ("fleet",) if "fleet" in doc.data else ())


def unknown_top_level(key: str, value: Any) -> str:
    if isinstance(value, dict):
        close = difflib.get_close_matches(key, [*SCHEMA, "hosts", "pools"], n=1)
        return f"unknown table [{key}]" + (f" (did you mean [{close[0]}]?)" if close else "")
    known = {k: t for t, fields in SCHEMA.items() for k in fields}
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean [{known[close[0]]}] {close[0]}?)" if close else ""
    return f"unknown key {key} outside any table{hint}"


def build_hosts(doc: TomlDocument) -> tuple[Host, ...]:
    entries = doc.data.get("hosts", [])
    if not isinstance(entries, list):
        raise doc.error(f"hosts: expected an array of tables ([[hosts]]), got {toml_type(entries)}", ("hosts",))
    seen: dict[str, int] = {}  # name → index of the host that declared it
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise doc.error(f"hosts: expected a table ([[hosts]]), got {toml_type(entry)}", ("hosts", i))
        check_table(doc, entry, HOST_FIELDS, ("hosts", i))
        if "name" not in entry:
            raise doc.error('host without a name (every [[hosts]] needs name = "...")', ("hosts", i))
        if "address" not in entry and (problem := host_problem(entry["name"])):
            raise doc.error(f"hosts.name (the address when none is given): {problem}", ("hosts", i, "name"))
        first = seen.setdefault(entry["name"], i)
        if first != i:
            where = doc.line(("hosts", first, "name"))
            raise doc.error(
                f"duplicate host name {entry['name']}" + (f" (first at line {where})" if where else ""),
                ("hosts", i, "name"),
            )
    lines = doc.array_lines("hosts")
    return tuple(
        Host(
            name=entry["name"],
            address=unbracketed(entry.get("address", entry["name"])),
            port=entry.get("port"),
            ring=entry.get("ring"),
            labels=dict(entry.get("labels", {})),
            line=line,
        )
        for entry, line in zip(entries, lines)
    )


def _router_settings(doc: TomlDocument) -> RouterSettings:
    """``[router]``, its front-door keys read by core/door.py."""
    table = dict(doc.data.get("router", {}))
    try:
        door = door_settings(table)
    except DoorSettingError as e:
        raise doc.error(f"router.{e.key}: {e}", ("router", e.key)) from e
    base = {k: v for k, v in table.items() if k not in DOOR_KEYS}
    settings: RouterSettings = _settings(RouterSettings, {"router": base}, "router")
    return dataclasses.replace(settings, door=door)


def build_pools(doc: TomlDocument, hosts: tuple[Host, ...]) -> tuple[Pool, ...]:
    """``[[pools]]``: each a unique name, a profile and a --limit pattern that selects at least one host, no host
    in two pools; with pools, ``[router] min_serving`` is each pool's own business."""
    entries = doc.data.get("pools", [])
    if not isinstance(entries, list):
        raise doc.error(f"pools: expected an array of tables ([[pools]]), got {toml_type(entries)}", ("pools",))
    if entries and "min_serving" in doc.data.get("router", {}):
        raise doc.error(
            "[router] min_serving cannot be set together with [[pools]]: set min_serving in each pool",
            ("router", "min_serving"),
        )
    lines = doc.array_lines("pools")
    pools: list[Pool] = []
    for i, (entry, line) in enumerate(zip(entries, lines)):
        pools.append(_pool(doc, i, entry, line, hosts, pools))
    return tuple(pools)


def _pool(doc: TomlDocument, i: int, entry: Any, line: int | None, hosts: tuple[Host, ...], seen: list[Pool]) -> Pool:
    if not isinstance(entry, dict):
        raise doc.error(f"pools: expected a table ([[pools]]), got {toml_type(entry)}", ("pools", i))
    check_table(doc, entry, POOL_FIELDS, ("pools", i))
    missing = next((key for key in ("name", "profile", "hosts") if key not in entry), None)
    if missing is not None:
        raise doc.error(f'pool without {missing} (every [[pools]] needs {missing} = "...")', ("pools", i))
    name = entry["name"]
    twice = next((p for p in seen if p.name == name), None)
    if twice is not None:
        raise doc.error(f"duplicate pool name {name} (first at line {twice.line})", ("pools", i, "name"))
    try:
        terms = parse_pattern(entry["hosts"])
    except UsageError as e:
        raise doc.error(f"pools.hosts: {e.message.removeprefix('--limit ')}", ("pools", i, "hosts")) from e
    members = tuple(h.name for h in hosts if any(t.matches(h) for t in terms))
    if not members:
        raise doc.error(f"pool {name}: hosts = {shown(entry['hosts'])} selects no host", ("pools", i, "hosts"))
    for other in seen:
        shared = next((h for h in members if h in other.members), None)
        if shared is not None:
            raise doc.error(
                f"host {shared} is in two pools: {other.name} (line {other.line}) and {name}", ("pools", i, "hosts")
            )
    return Pool(name, entry["profile"], entry["hosts"], members, entry.get("min_serving", 1), line)


def _settings(cls: type, doc: Mapping[str, Any], table: str) -> Any:
    values = dict(doc.get(table, {}))
    if "smoke" in values:
        values["smoke_prompts"] = tuple(values.pop("smoke").get("prompts", ()))
    for key, value in values.items():
        if key == "smoke_prompts":
            continue
        if SCHEMA[table][key].kind == "number":
            values[key] = float(value)
        elif SCHEMA[table][key].kind == "strings":
            values[key] = tuple(value)
    return cls(**values)
