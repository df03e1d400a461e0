"""Profiles and matrix files: a parsed TOML document (``tomldoc``, shared with the fleet file) and a checked
reader of its tables.

Errors come out as ``ConfigError`` with ``FILE:LINE``. Pure: it takes the text and the path it came from.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, TypeVar, overload

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fleetctl.core.tomldoc import KeyLines, TomlDocument, Where, read_toml
from fleetctl.errors import ConfigError

T = TypeVar("T")


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


Document = TomlDocument


def parse_document(text: str, path: str) -> Document:
    """The parsed file; a syntax error is ``FILE:LINE: not valid TOML: reason``."""
    return read_toml(text, path, syntax="not valid TOML")


def key_lines(text: str) -> dict[Where, int]:
    """Line numbers of table headers and keys: ``("gpu", 3, "names")`` is key ``names`` of the 4th ``[[gpu]]``."""
    return KeyLines.read(text).lines


class Fields:
    """Typed, checked access to one table; ``finish()`` rejects the keys nobody asked for."""

    def __init__(self, doc: Document, where: Where, table: Any, what: str) -> None:
        if not isinstance(table, dict):
            raise doc.error(f"{what} must be a table", where)
        self.doc, self.where, self.table, self.what = doc, where, table, what
        self.seen: set[str] = set()

    def value(self, key: str, types: tuple[type[T], ...], type_name: str, *, required: bool = True) -> T | None:
        """The key's value if it has one of ``types`` (a bool is no integer); None if it is absent and optional."""
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

    # A required key, or one with a default, always gives a string: only an optional one without a default
    # can give None. The overloads tell mypy so, for every caller.
    @overload
    def text(self, key: str, *, required: Literal[True] = True, default: str | None = None) -> str: ...
    @overload
    def text(self, key: str, *, required: bool = True, default: str) -> str: ...
    @overload
    def text(self, key: str, *, required: bool = True, default: None = None) -> str | None: ...

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

    @overload
    def version(self, key: str, *, required: Literal[True] = True) -> str: ...
    @overload
    def version(self, key: str, *, required: bool) -> str | None: ...

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

    @overload
    def specifier(self, key: str, *, required: Literal[True] = True) -> SpecifierSet: ...
    @overload
    def specifier(self, key: str, *, required: bool) -> SpecifierSet | None: ...

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
