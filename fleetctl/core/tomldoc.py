"""A TOML file read once with the standard library, and where its tables and keys are, found only when needed.

``read_toml`` parses with ``tomllib``. A syntax error names ``FILE:LINE``: a table or key defined twice points at
its second definition (and the first), anything else carries tomlkit's wording and column, which says more than
tomllib's. Line numbers of keys come from ``KeyLines``, a position-only second reading of the (accepted) text
that runs the first time an error needs a line. Shared by the fleet file, profiles and the matrix. Pure.
"""

from __future__ import annotations

import datetime as dt
import re

try:  # the standard library's parser, compiled (tomllib is tomli's pure-Python copy): ~3x faster on big fleets
    import tomli as tomllib
except ImportError:  # pragma: no cover - an install without it reads the same documents, slower
    import tomllib  # type: ignore[no-redef]
from typing import Any

from fleetctl.errors import ConfigError

Where = tuple[str | int, ...]

_TOMLLIB_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_TOMLKIT_AT = re.compile(r" at line \d+ col \d+$")


class TomlDocument:
    """The parsed data of one TOML file and, on demand, the line of any table or key in it."""

    def __init__(self, path: str, text: str, data: dict[str, Any]) -> None:
        self.path, self.text, self.data = path, text, data
        self._lines: KeyLines | None = None

    @property
    def lines(self) -> KeyLines:
        if self._lines is None:
            self._lines = KeyLines.read(self.text)
        return self._lines

    def line(self, where: Where) -> int | None:
        """The line of ``where`` or of the nearest enclosing table or key that has one."""
        return self.lines.line_of(where)

    def error(self, message: str, where: Where = ()) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line(where) if where else None)

    def array_lines(self, key: str) -> list[int | None]:
        """The line of each element of the top-level array of tables ``key`` (``[[key]]`` headers).

        A regular expression finds the headers when the text has no multi-line string (which could hold a
        header-like line) and finds exactly as many as the array has elements; otherwise the full reading.
        """
        count = len(self.data.get(key) or ())
        if '"""' not in self.text and "'''" not in self.text:
            header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(key)}[ \t]*\]\]", re.MULTILINE)
            starts = [m.start() for m in header.finditer(self.text)]
            if len(starts) == count:
                return _line_numbers(self.text, starts)
        return [self.line((key, i)) for i in range(count)]


def _line_numbers(text: str, offsets: list[int]) -> list[int | None]:
    """1-based line numbers of increasing ``offsets`` in ``text``, counting newlines between them once."""
    found: list[int | None] = []
    line, at = 1, 0
    for offset in offsets:
        line += text.count("\n", at, offset)
        at = offset
        found.append(line)
    return found


def read_toml(text: str, path: str, *, syntax: str = "TOML syntax error") -> TomlDocument:
    """``text`` (read from ``path``) parsed, or ConfigError ``path:LINE: SYNTAX: reason``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise syntax_error(text, path, e, syntax) from e
    return TomlDocument(path, text, data)


def syntax_error(text: str, path: str, e: tomllib.TOMLDecodeError, syntax: str) -> ConfigError:
    """One line for a document tomllib refused: a duplicate by name, else tomlkit's reason and column."""
    found = _TOMLLIB_AT.search(str(e))
    line = int(found.group(1)) if found and found.group(1) else None
    reason = _TOMLLIB_AT.sub("", str(e))
    if reason.startswith(("Cannot overwrite", "Cannot declare", "Cannot mutate")):
        duplicates = KeyLines.read(text).duplicates
        twice = next((d for d in duplicates if d[1] == line), duplicates[0] if duplicates else None)
        if twice:
            at, second, first = twice
            return ConfigError(f"{dotted(at)} is defined twice (first at line {first})", path=path, line=second)
    near = line or (max(len(text.splitlines()), 1) if found else None)  # "at end of document": the last line
    described = _tomlkit_reason_near(text, near) if near else None
    described = described or _tomlkit_reason(text)
    if described:
        reason, line, col = described
        where = f" (column {col + 1})" if col is not None else ""
        return ConfigError(f"{syntax}: {reason}{where}", path=path, line=line)
    return ConfigError(f"{syntax}: {reason}", path=path, line=line)


def _tomlkit_reason_near(text: str, line: int) -> tuple[str, int | None, int | None] | None:
    """tomlkit's reason for the error tomllib found on ``line``, from the lines between the table header above it
    and it (tomlkit takes seconds for a 10,000-host file); None when that piece errs elsewhere."""
    if '"""' in text or "'''" in text:  # a multi-line string may hold a line that looks like a header
        return None
    lines = text.splitlines(keepends=True)[:line]
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].lstrip().startswith("[")), 0)
    found = _tomlkit_reason("".join(lines[start:]))
    if found is None or found[1] is None or found[1] + start != line:
        return None
    return found[0], line, found[2]


def _tomlkit_reason(text: str) -> tuple[str, int | None, int | None] | None:
    """tomlkit's account of what is wrong (reason, line, column), or None when tomlkit accepts the text."""
    import tomlkit
    from tomlkit.exceptions import ParseError, TOMLKitError

    try:
        tomlkit.parse(text)
    except ParseError as e:
        reason = _TOMLKIT_AT.sub("", str(e)).rstrip(".")
        reason = reason.replace("character: '\\x00'", "end of file").replace("character: '\\n'", "end of line")
        return reason, e.line, e.col
    except TOMLKitError as e:
        return str(e).rstrip("."), None, None
    return None


def dotted(at: Where) -> str:
    return ".".join(str(k) for k in at if not isinstance(k, int))


def toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type: string, integer, float, boolean, array, table, datetime..."""
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


_SPACE = re.compile(r"[ \t\r\n]*")
_PLAIN = re.compile(r"[^\"'#\[\]{}\n]+")
_STRING = {
    '"""': re.compile(r'"""(?:\\[\s\S]|[^\\])*?"""(?:""?(?!"))?'),
    "'''": re.compile(r"'''[\s\S]*?'''(?:''?(?!'))?"),
    '"': re.compile(r'"(?:\\.|[^"\\\n])*"'),
    "'": re.compile(r"'[^'\n]*'"),
}
_KEY_PART = re.compile(r"[^\"'=\]\n]+")


class KeyLines:
    """Where each table, ``[[array]]`` element and key is declared: path → line (1-based).

    Paths use an index for array-of-tables elements: ``("hosts", 0, "name")``. Keys inside inline tables and
    arrays are not recorded; ``line_of`` then gives the line of the nearest recorded parent. It also notes keys
    and tables defined twice, for syntax errors.
    """

    def __init__(self, text: str) -> None:
        self.text, self.i, self.line = text, 0, 1
        self.lines: dict[Where, int] = {}
        self.kinds: dict[Where, str] = {}  # table, implicit, aot, key, dotted
        self.aot_sizes: dict[Where, int] = {}
        self.duplicates: list[tuple[Where, int, int]] = []  # (path, line, first line)
        self.table: Where = ()

    @classmethod
    def read(cls, text: str) -> KeyLines:
        """The positions in ``text``; empty when even this lenient reading fails."""
        lines = cls(text)
        try:
            lines.scan()
        except (ValueError, IndexError, KeyError, tomllib.TOMLDecodeError):
            return cls("")
        return lines

    def line_of(self, at: Where) -> int | None:
        for end in range(len(at), 0, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return None

    def scan(self) -> None:
        while True:
            self.jump(_SPACE)
            if self.i >= len(self.text):
                return
            if self.text[self.i] == "#":
                self.skip_comment()
            elif self.text[self.i] == "[":
                self.header()
            else:
                self.assignment()

    def jump(self, pattern: re.Pattern[str]) -> bool:
        """Move past what ``pattern`` matches here, counting its newlines; False when it matches nothing."""
        found = pattern.match(self.text, self.i)
        if not found or found.end() == self.i:
            return False
        self.line += self.text.count("\n", self.i, found.end())
        self.i = found.end()
        return True

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

    def note(self, at: Where, line: int, kind: str, allowed: tuple[str, ...]) -> None:
        """Record ``at``; one already there counts as defined twice unless its kind is in ``allowed``."""
        if at not in self.lines:
            self.lines[at], self.kinds[at] = line, kind
        elif self.kinds[at] in allowed:
            self.kinds[at] = kind
        else:
            self.duplicates.append((at, line, self.lines[at]))

    def resolve(self, keys: list[str], line: int) -> Where:
        """A header's parent path: super-tables become implicit tables, arrays of tables their last element."""
        at: Where = ()
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
            elif not self.jump(_KEY_PART):
                raise ValueError(f"no {stop!r} after a key")
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
            if self.jump(_PLAIN):
                continue
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
        kind = quote * 3 if self.text.startswith(quote * 3, self.i) else quote
        if not self.jump(_STRING[kind]):
            raise ValueError("unterminated string")
