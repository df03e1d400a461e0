"""Profiles and matrix files: a parsed TOML document (``tomldoc``, shared with the fleet file) and a checked
reader of its tables on ``core.schema`` (the fleet file's checker and wording).

Errors come out as ``ConfigError`` with ``FILE:LINE``. Pure: it takes the text and the path it came from.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any, Literal, TypeVar, overload

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fleetctl.core.addresses import shown
from fleetctl.core.schema import Field, check_value, failed, missing_key, unknown_key, wrong_type
from fleetctl.core.tomldoc import KeyLines, TomlDocument, Where, dotted, read_toml
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
    """Typed, checked access to one table (``core.schema``'s wording); ``finish()`` rejects the keys nobody asked
    for."""

    def __init__(self, doc: Document, where: Where, table: Any) -> None:
        if not isinstance(table, dict):
            raise doc.error(wrong_type(where, "table", table), where)
        self.doc, self.where, self.table = doc, where, table
        self.seen: set[str] = set()

    def value(self, key: str, types: tuple[type[T], ...], type_name: str, *, required: bool = True) -> T | None:
        """The key's value if it has one of ``types`` (a bool is no integer); None if it is absent and optional.

        ``type_name`` is a ``core.schema`` kind (``"string"``) or what to say is expected."""
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise self._missing(key)
            return None
        value = self.table[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            hint = " (write versions and specifiers in quotes)" if type_name == "string" else ""
            raise self.doc.error(wrong_type(self.where + (key,), type_name, value) + hint, self.where + (key,))
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
        value = self.value(key, (str,), "string", required=required)
        return default if value is None else value

    def flag(self, key: str, default: bool) -> bool:
        value = self.value(key, (bool,), "boolean", required=False)
        return default if value is None else value

    def number(self, key: str, *, required: bool = False) -> int | None:
        return self.value(key, (int,), "integer", required=required)

    def texts(self, key: str, *, required: bool = True) -> tuple[str, ...]:
        value = self.value(key, (list,), "strings", required=required)
        if value is None:
            return ()
        problem = check_value(value, Field("strings"))
        if problem:
            raise self.doc.error(f"{dotted(self.where + (key,))}{problem}", self.where + (key,))
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
            raise self.error(key, f"must be a version, got {shown(value)}") from e

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
            raise self.error(key, f'must be a version specifier (e.g. ">=8.0"), got {shown(value)}') from e

    def source(self) -> str:
        url = self.text("source")
        if not url.startswith("https://"):
            raise self.error("source", f"must be an https:// URL, got {shown(url)}")
        return url

    def _missing(self, key: str) -> ConfigError:
        """A missing key; when the table has a near miss (a typo), that is the unknown key to point at."""
        near = difflib.get_close_matches(key, [k for k in self.table if k not in self.seen], n=1)
        if near:
            at = self.where + (near[0],)
            return self.doc.error(f"unknown key {dotted(at)} (did you mean {key}?)", at)
        return self.doc.error(missing_key(self.where + (key,)), self.where)

    def error(self, key: str, problem: str) -> ConfigError:
        """``FILE:LINE: table.key: problem`` for a value that fails a check."""
        return self.doc.error(failed(self.where + (key,), problem), self.where + (key,))

    def finish(self) -> None:
        unknown = next((k for k in self.table if k not in self.seen), None)
        if unknown is not None:
            at = self.where + (unknown,)
            raise self.doc.error(unknown_key(at, sorted(self.seen)), at)
