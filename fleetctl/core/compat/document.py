"""A parsed TOML document that knows the line of every table and key, and a checked reader of its tables.

Errors come out as ``ConfigError`` with ``FILE:LINE``. Pure: it takes the text and the path it came from.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fleetctl.errors import ConfigError

Where = tuple[str | int, ...]

_HEADER = re.compile(r"^\[(\[)?\s*(.+?)\s*\](\])?$")
_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:\\.|[^"\\])*"|\'[^\']*\''
_KEY = re.compile(rf"^((?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*)\s*=")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")
_STRINGS = re.compile(_QUOTED)
_DECODE_AT = re.compile(r"\s*\(at line (\d+), column \d+\)$")


@lru_cache(maxsize=4096)
def ver(text: str) -> Version:
    """A parsed version, cached: the same driver and CUDA strings come back for thousands of hosts."""
    return Version(text)


@lru_cache(maxsize=1024)
def spec(text: str) -> SpecifierSet:
    return SpecifierSet(text)


@lru_cache(maxsize=4096)
def within(specifier: SpecifierSet, version: str) -> bool:
    """``version`` satisfies ``specifier``; ``0.11.0rc1`` and ``0.11.0+cu129`` count as ``0.11.0``."""
    return specifier.contains(ver(ver(version).base_version), prereleases=True)


@dataclass(frozen=True)
class Document:
    path: str
    data: dict[str, Any]
    lines: dict[Where, int]

    def line(self, where: Where) -> int | None:
        """The line of ``where`` or of the nearest enclosing table or key that has one."""
        while where:
            if where in self.lines:
                return self.lines[where]
            where = where[:-1]
        return None

    def error(self, message: str, where: Where = ()) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line(where))


def parse_document(text: str, path: str) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        found = _DECODE_AT.search(str(e))
        message = _DECODE_AT.sub("", str(e))
        raise ConfigError(f"not valid TOML: {message}", path=path, line=int(found.group(1)) if found else None) from e
    return Document(path, data, key_lines(text))


def key_lines(text: str) -> dict[Where, int]:
    """Line numbers of table headers and keys: ``("gpu", 3, "names")`` is key ``names`` of the 4th ``[[gpu]]``."""
    lines: dict[Where, int] = {}
    counts: dict[Where, int] = {}
    table: Where = ()
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if depth == 0 and (header := _HEADER.match(_uncomment(stripped))):
            table = _table_path(_parts(header.group(2)), counts, is_array=bool(header.group(1)))
            lines.setdefault(table, number)
        elif depth == 0 and (key := _KEY.match(stripped)):
            lines.setdefault(table + _parts(key.group(1)), number)
        depth = max(0, depth + _bracket_balance(stripped))
    return lines


def _table_path(parts: tuple[str, ...], counts: dict[Where, int], *, is_array: bool) -> Where:
    path: list[str | int] = []
    for i, part in enumerate(parts):
        path.append(part)
        key = tuple(path)
        if is_array and i == len(parts) - 1:
            counts[key] = counts.get(key, 0) + 1
        if key in counts:
            path.append(counts[key] - 1)
    return tuple(path)


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[0] in "\"'" else p for p in _PART.findall(dotted))


def _uncomment(line: str) -> str:
    return _STRINGS.sub('""', line).split("#", 1)[0].strip()


def _bracket_balance(line: str) -> int:
    """Open minus closed brackets outside strings and comments, after the key (multi-line arrays)."""
    code = _uncomment(line)
    if _HEADER.match(code):
        return 0
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


class Fields:
    """Typed, checked access to one table; ``finish()`` rejects the keys nobody asked for."""

    def __init__(self, doc: Document, where: Where, table: Any, what: str) -> None:
        if not isinstance(table, dict):
            raise doc.error(f"{what} must be a table", where)
        self.doc, self.where, self.table, self.what = doc, where, table, what
        self.seen: set[str] = set()

    def value(self, key: str, types: tuple[type, ...], type_name: str, *, required: bool = True) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise self._missing(key)
            return None
        value = self.table[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            hint = " (write versions and specifiers in quotes)" if type_name == "a string" else ""
            raise self.error(key, f"{key} must be {type_name}, not {_type_of(value)}{hint}")
        return value

    def text(self, key: str, *, required: bool = True, default: str | None = None) -> str | None:
        value = self.value(key, (str,), "a string", required=required)
        return default if value is None else value

    def flag(self, key: str, default: bool) -> bool:
        value = self.value(key, (bool,), "true or false", required=False)
        return default if value is None else value

    def number(self, key: str, *, required: bool = False) -> int | None:
        return self.value(key, (int,), "an integer", required=required)

    def texts(self, key: str, *, required: bool = True) -> tuple[str, ...]:
        value = self.value(key, (list,), "a list of strings", required=required)
        if value is None:
            return ()
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, f"{key} must be a list of strings")
        return tuple(value)

    def version(self, key: str, *, required: bool = True) -> str | None:
        """A version string that parses (kept as written, for messages)."""
        value = self.text(key, required=required)
        if value is not None:
            self.check_version(key, value)
        return value

    def check_version(self, key: str, value: str) -> None:
        try:
            ver(value)
        except InvalidVersion as e:
            raise self.error(key, f"{key}: {value!r} is not a version") from e

    def specifier(self, key: str, *, required: bool = True) -> SpecifierSet | None:
        value = self.text(key, required=required)
        return None if value is None else self.parse_specifier(key, value)

    def parse_specifier(self, key: str, value: str) -> SpecifierSet:
        try:
            return spec(value)
        except InvalidSpecifier as e:
            raise self.error(key, f'{key}: {value!r} is not a version specifier (e.g. ">=8.0")') from e

    def source(self) -> str:
        url = self.text("source")
        if not url.startswith("https://"):
            raise self.error("source", f"source must be an https:// URL, not {url!r}")
        return url

    def _missing(self, key: str) -> ConfigError:
        """A missing key; when the table has a near miss (a typo), point at that line."""
        import difflib

        near = difflib.get_close_matches(key, [k for k in self.table if k not in self.seen], n=1)
        if near:
            return self.error(near[0], f"missing key {key!r} (did you mean it instead of {near[0]!r}?)")
        return self.doc.error(f"{self.what}: missing key {key!r}", self.where)

    def error(self, key: str, message: str) -> ConfigError:
        return self.doc.error(f"{self.what}: {message}", self.where + (key,))

    def finish(self) -> None:
        unknown = [k for k in self.table if k not in self.seen]
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key {unknown[0]!r} (known: {known})")


def _type_of(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
