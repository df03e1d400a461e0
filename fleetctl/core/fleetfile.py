"""The fleet file (TOML) to a Fleet. Every problem is a ConfigError that names ``FILE:LINE``.

tomlkit parses; the schema below says which tables and keys exist, their types and allowed values. tomlkit
keeps no line numbers for keys, so ``KeyLines`` reads the (already accepted) text a second time for positions.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.core.door import DOOR_KEYS, DoorSettingError, door_settings
from fleetctl.core.fleet import Fleet, Host, RolloutSettings, RouterSettings, SshSettings
from fleetctl.errors import ConfigError

KeyPath = tuple[str | int, ...]
Check = Callable[[Any], str | None]  # a value → what is wrong with it, or None


@dataclass(frozen=True)
class Field:
    kind: str  # string, integer, number, strings, string-table
    check: Check | None = None


def _one_of(*choices: str) -> Check:
    names = " or ".join(f'"{c}"' for c in choices)
    return lambda v: None if v in choices else f'must be {names}, got "{v}"'


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}, got {v}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, got {v}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be greater than 0, got {v}"


def _http_url(v: str) -> str | None:
    ok = re.fullmatch(r"https?://[^\s/]+(/\S*)?", v)
    return None if ok else f'must be an http:// or https:// URL, got "{v}"'


def _token(v: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v)
    return None if ok else f'must be letters, digits, ".", "_" or "-" (starting with a letter or digit), got "{v}"'


def _distinct(v: list[str]) -> str | None:
    twice = next((x for i, x in enumerate(v) if x in v[:i]), None)
    return None if twice is None else f'"{twice}" is listed twice'


SCHEMA: dict[str, dict[str, Field]] = {
    "fleet": {"name": Field("string")},
    "ssh": {
        "user": Field("string"),
        "identity_file": Field("string"),
        "known_hosts": Field("string"),
        "host_key_policy": Field("string", _one_of("strict", "accept-new")),
        "proxy_jump": Field("string"),
        "connect_timeout_s": Field("number", _positive),
    },
    "router": {
        "url": Field("string", _http_url),
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
    },
}
HOST_FIELDS: dict[str, Field] = {
    "name": Field("string", _token),
    "address": Field("string"),
    "port": Field("integer", _between(1, 65535)),
    "ring": Field("string", _token),
    "labels": Field("string-table"),
}
EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "strings": "an array of strings",
    "string-table": "a table of strings",
}


def parse_fleet(text: str, path: str) -> Fleet:
    """The fleet declared by ``text`` (read from ``path``), or ConfigError with ``path:LINE: what is wrong``."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    lines = KeyLines.read(text)
    try:
        doc = tomlkit.parse(text).unwrap()
    except TOMLKitError as e:
        raise syntax_error(e, lines, path) from e
    problem = Problems(path, lines)
    check_document(doc, problem)
    hosts = build_hosts(doc.get("hosts", []), problem)
    return Fleet(
        name=doc["fleet"]["name"],
        path=path,
        hosts=hosts,
        ssh=_settings(SshSettings, doc, "ssh"),
        router=_router_settings(doc, problem),
        rollout=_settings(RolloutSettings, doc, "rollout"),
    )


class Problems:
    """Makes the ConfigError for a path in the document, at the line where that path is declared."""

    def __init__(self, path: str, lines: KeyLines) -> None:
        self.path, self.lines = path, lines

    def __call__(self, at: KeyPath, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.lines.line_of(at))


def syntax_error(e: Exception, lines: KeyLines, path: str) -> ConfigError:
    """tomlkit's error as one line; a key or table defined twice points at the second definition."""
    reason = re.sub(r" at line \d+ col \d+$", "", str(e)).rstrip(".")
    reason = reason.replace("character: '\\x00'", "end of file").replace("character: '\\n'", "end of line")
    if lines.duplicates and ("already exists" in reason or "Redefinition" in reason):
        at, line, first = lines.duplicates[0]
        return ConfigError(f"{dotted(at)} is defined twice (first at line {first})", path=path, line=line)
    line, col = getattr(e, "line", None), getattr(e, "col", None)
    where = f" (column {col + 1})" if col is not None else ""
    return ConfigError(f"TOML syntax error: {reason}{where}", path=path, line=line)


def dotted(at: KeyPath) -> str:
    return ".".join(str(k) for k in at if not isinstance(k, int))


def check_document(doc: Mapping[str, Any], problem: Problems) -> None:
    for key, value in doc.items():
        if key == "hosts":
            continue
        if key not in SCHEMA:
            raise problem((key,), unknown_top_level(key, value))
        if not isinstance(value, dict):
            raise problem((key,), f"{key}: expected a table, got {toml_type(value)}")
        check_table(value, SCHEMA[key], (key,), problem)
    if not isinstance(doc.get("fleet", {}).get("name"), str):
        raise problem(("fleet",) if "fleet" in doc else (), 'missing [fleet] name (name = "...")')


def unknown_top_level(key: str, value: Any) -> str:
    if isinstance(value, dict):
        close = difflib.get_close_matches(key, [*SCHEMA, "hosts"], n=1)
        return f"unknown table [{key}]" + (f" (did you mean [{close[0]}]?)" if close else "")
    known = {k: t for t, fields in SCHEMA.items() for k in fields}
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean [{known[close[0]]}] {close[0]}?)" if close else ""
    return f"unknown key {key} outside any table{hint}"


def check_table(table: Mapping[str, Any], fields: Mapping[str, Field], at: KeyPath, problem: Problems) -> None:
    for key, value in table.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise problem((*at, key), f"unknown key {dotted((*at, key))}{hint}")
        message = check_value(value, fields[key])
        if message:
            raise problem((*at, key), f"{dotted((*at, key))}{message}")


def check_value(value: Any, field: Field) -> str | None:
    """``": what is wrong"`` (or ``".sub: ..."`` for a label or list item), or None when the value is good."""
    kind = field.kind
    if kind == "strings" and isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
        if bad is not None:
            return f"[{bad}]: expected a string, got {toml_type(value[bad])}"
    elif kind == "string-table" and isinstance(value, dict):
        bad = next((k for k, v in value.items() if not isinstance(v, str)), None)
        if bad is not None:
            return f".{bad}: expected a string, got {toml_type(value[bad])}"
    elif not has_kind(value, kind):
        return f": expected {EXPECTED[kind]}, got {toml_type(value)}"
    if kind == "string" and not value:
        return ": must not be empty"
    if kind == "number" and not math.isfinite(value):
        return f": must be a finite number, got {value}"
    problem = field.check(value) if field.check else None
    return f": {problem}" if problem else None


def has_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    types = {"string": str, "integer": int, "number": (int, float), "strings": list, "string-table": dict}
    return isinstance(value, types[kind])


def toml_type(value: Any) -> str:
    import datetime as dt

    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        (dt.datetime, "datetime"),
        (dt.date, "date"),
        (dt.time, "time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def build_hosts(entries: Any, problem: Problems) -> tuple[Host, ...]:
    if not isinstance(entries, list):
        raise problem(("hosts",), f"hosts: expected an array of tables ([[hosts]]), got {toml_type(entries)}")
    hosts: list[Host] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise problem(("hosts", i), f"hosts: expected a table ([[hosts]]), got {toml_type(entry)}")
        check_table(entry, HOST_FIELDS, ("hosts", i), problem)
        if "name" not in entry:
            raise problem(("hosts", i), 'host without a name (every [[hosts]] needs name = "...")')
        first = next((j for j, h in enumerate(hosts) if h.name == entry["name"]), None)
        if first is not None:
            where = problem.lines.line_of(("hosts", first, "name"))
            raise problem(
                ("hosts", i, "name"),
                f"duplicate host name {entry['name']}" + (f" (first at line {where})" if where else ""),
            )
        hosts.append(
            Host(
                name=entry["name"],
                address=entry.get("address", entry["name"]),
                port=entry.get("port"),
                ring=entry.get("ring"),
                labels=dict(entry.get("labels", {})),
                line=problem.lines.line_of(("hosts", i)),
            )
        )
    return tuple(hosts)


def _router_settings(doc: Mapping[str, Any], problem: Problems) -> RouterSettings:
    """``[router]``, its front-door keys read by core/door.py."""
    table = dict(doc.get("router", {}))
    try:
        door = door_settings(table)
    except DoorSettingError as e:
        raise problem(("router", e.key), str(e)) from e
    base = {k: v for k, v in table.items() if k not in DOOR_KEYS}
    settings: RouterSettings = _settings(RouterSettings, {"router": base}, "router")
    return dataclasses.replace(settings, door=door)


def _settings(cls: type, doc: Mapping[str, Any], table: str) -> Any:
    values = dict(doc.get(table, {}))
    for key, value in values.items():
        if SCHEMA[table][key].kind == "number":
            values[key] = float(value)
        elif SCHEMA[table][key].kind == "strings":
            values[key] = tuple(value)
    return cls(**values)


class KeyLines:
    """Where each table, ``[[array]]`` element and key is declared: path → line (1-based).

    A position-only second reading of the text. Paths use an index for array-of-tables elements:
    ``("hosts", 0, "name")``. Keys inside inline tables and arrays are not recorded; ``line_of`` then gives the
    line of the nearest recorded parent. It also notes keys and tables defined twice, for tomlkit's errors.
    """

    def __init__(self, text: str) -> None:
        self.text, self.i, self.line = text, 0, 1
        self.lines: dict[KeyPath, int] = {}
        self.kinds: dict[KeyPath, str] = {}  # table, implicit, aot, key, dotted
        self.aot_sizes: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # (path, line, first line)
        self.table: KeyPath = ()

    @classmethod
    def read(cls, text: str) -> KeyLines:
        """The positions in ``text``; empty when even this lenient reading fails (tomlkit then reports it)."""
        lines = cls(text)
        try:
            lines.scan()
        except (ValueError, IndexError, tomllib.TOMLDecodeError):
            return cls("")
        return lines

    def line_of(self, at: KeyPath) -> int | None:
        for end in range(len(at), 0, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return None

    def scan(self) -> None:
        while True:
            self.skip(" \t\r\n")
            if self.i >= len(self.text):
                return
            if self.text[self.i] == "#":
                self.skip_comment()
            elif self.text[self.i] == "[":
                self.header()
            else:
                self.assignment()

    def skip(self, chars: str) -> None:
        while self.i < len(self.text) and self.text[self.i] in chars:
            self.line += self.text[self.i] == "\n"
            self.i += 1

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end

    def header(self) -> None:
        line, aot = self.line, self.text.startswith("[[", self.i)
        self.i += 2 if aot else 1
        keys = self.keys("]")
        self.i += 2 if aot else 1
        parent = self.resolve(keys[:-1], line)
        at = (*parent, keys[-1])
        if aot:
            self.note(at, line, "aot", allowed=("aot",))
            index = self.aot_sizes.get(at, 0)
            self.aot_sizes[at] = index + 1
            self.table = (*at, index)
            self.lines[self.table], self.kinds[self.table] = line, "table"
        else:
            self.note(at, line, "table", allowed=("implicit",))
            self.table = at

    def assignment(self) -> None:
        line = self.line
        keys = self.keys("=")
        self.i += 1
        for end in range(1, len(keys)):
            self.note((*self.table, *keys[:end]), line, "dotted", allowed=("dotted",))
        self.note((*self.table, *keys), line, "key", allowed=())
        self.skip_value()

    def note(self, at: KeyPath, line: int, kind: str, allowed: tuple[str, ...]) -> None:
        """Record ``at``; one already there counts as defined twice unless its kind is in ``allowed``."""
        if at not in self.lines:
            self.lines[at], self.kinds[at] = line, kind
        elif self.kinds[at] in allowed:
            self.kinds[at] = kind
        else:
            self.duplicates.append((at, line, self.lines[at]))

    def resolve(self, keys: list[str], line: int) -> KeyPath:
        """A header's parent path: super-tables become implicit tables, arrays of tables their last element."""
        at: KeyPath = ()
        for key in keys:
            at = (*at, key)
            if at in self.aot_sizes:
                at = (*at, self.aot_sizes[at] - 1)
            elif at not in self.lines:
                self.lines[at], self.kinds[at] = line, "implicit"
        return at

    def keys(self, stop: str) -> list[str]:
        """The dotted key up to ``stop`` (not consumed), quoted parts decoded."""
        start = self.i
        while self.text[self.i] != stop:
            if self.text[self.i] in "\"'":
                self.string()
            else:
                self.i += 1
        raw = self.text[start : self.i].strip()
        if '"' not in raw and "'" not in raw:
            return [k.strip() for k in raw.split(".")]
        node, keys = tomllib.loads(f"{raw} = 0"), []
        while isinstance(node, dict):
            key = next(iter(node))
            keys.append(key)
            node = node[key]
        return keys

    def skip_value(self) -> None:
        depth = 0
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == "\n" and depth == 0:
                return
            if c in "\"'":
                self.string()
                continue
            if c == "#":
                self.skip_comment()
                continue
            depth += (c in "[{") - (c in "]}")
            self.line += c == "\n"
            self.i += 1

    def string(self) -> None:
        """Skip one string of any of TOML's four kinds, counting the newlines inside."""
        quote = self.text[self.i]
        triple = self.text.startswith(quote * 3, self.i)
        self.i += 3 if triple else 1
        while not self.text.startswith(quote * 3 if triple else quote, self.i):
            step = 2 if quote == '"' and self.text[self.i] == "\\" else 1  # an escape: skip what it escapes
            self.line += self.text.count("\n", self.i, self.i + step)
            self.i += step
            if self.i >= len(self.text):
                raise ValueError("unterminated string")
        self.i += 3 if triple else 1
        while triple and self.text.startswith(quote, self.i):  # """a"""" ends with up to two quotes of content
            self.i += 1
