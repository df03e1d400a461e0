"""The one schema checker for TOML documents (the fleet file, profiles, the matrix): which keys a table has,
their types and checks, and one wording for each way a key can be wrong.

- wrong type:  ``ssh.user: expected a string, got integer``
- failed check: ``ssh.host_key_policy: must be "strict" or "accept-new", got "x"``
- unknown key: ``unknown key ssh.usr (did you mean user?)`` (or ``(known: a, b)`` when nothing is close)
- missing key: ``missing key image.ref``

Every message is raised through ``TomlDocument.error`` and so reads ``FILE:LINE: message``. Pure.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.core.tomldoc import TomlDocument, Where, dotted, toml_type

Check = Callable[[Any], str | None]  # a value → what is wrong with it, or None


@dataclass(frozen=True)
class Field:
    kind: str  # string, text (may be empty), integer, number, boolean, strings, string-table, table, smoke-table
    check: Check | None = None


EXPECTED = {
    "string": "a string",
    "text": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "strings": "an array of strings",
    "string-table": "a table of strings",
    "table": "a table",
    "smoke-table": "a table ([rollout.smoke] prompts = [...])",
}

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "text": str,
    "integer": int,
    "number": (int, float),
    "strings": list,
    "string-table": dict,
    "table": dict,
    "smoke-table": dict,
}


def has_kind(value: Any, kind: str) -> bool:
    """``value`` is of ``kind``; a boolean is of no kind but ``boolean``."""
    if kind == "boolean":
        return isinstance(value, bool)
    return not isinstance(value, bool) and isinstance(value, _TYPES[kind])


def wrong_type(at: Where, expected: str, value: Any) -> str:
    """``a.b: expected EXPECTED, got TYPE``; ``expected`` is a kind or a description."""
    return f"{dotted(at)}: expected {EXPECTED.get(expected, expected)}, got {toml_type(value)}"


def failed(at: Where, problem: str) -> str:
    """``a.b: problem`` (a value of the right type that fails a check)."""
    return f"{dotted(at)}: {problem}"


def missing_key(at: Where) -> str:
    return f"missing key {dotted(at)}"


def unknown_key(at: Where, known: Collection[str]) -> str:
    """``unknown key a.b (did you mean c?)``, or ``(known: ...)`` when no known key is close."""
    close = difflib.get_close_matches(str(at[-1]), list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
    return f"unknown key {dotted(at)}{hint}"


def unknown_table(name: str, known: Collection[str]) -> str:
    """``unknown table [x] (did you mean [y]?)``, or ``(known: ...)`` when no known table is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean [{close[0]}]?)" if close else f" (known: {', '.join(known)})"
    return f"unknown table [{name}]{hint}"


def check_table(doc: TomlDocument, table: Mapping[str, Any], fields: Mapping[str, Field], at: Where) -> None:
    """Unknown keys first (a typo explains the rest), then each value against its field."""
    if not fields.keys() >= table.keys():
        unknown = next(key for key in table if key not in fields)
        raise doc.error(unknown_key((*at, unknown), fields), (*at, unknown))
    for key, value in table.items():
        message = check_value(value, fields[key])
        if message:
            raise doc.error(f"{dotted((*at, key))}{message}", (*at, key))


#: the one type a value of each kind has in the common case (booleans, which are ints, are never of these)
_PLAIN: dict[str, type] = {"string": str, "text": str, "integer": int, "boolean": bool, "table": dict}
_STR = {str}


def check_value(value: Any, field: Field) -> str | None:
    """``": what is wrong"`` (or ``"[i]: ..."``/``".sub: ..."`` for a list item or a sub-key), or None."""
    kind = field.kind
    if type(value) is _PLAIN.get(kind) and (value or kind != "string"):  # the common case, decided at once
        problem = field.check(value) if field.check else None
        return f": {problem}" if problem else None
    if kind == "strings" and isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
        if bad is not None:
            return f"[{bad}]: expected a string, got {toml_type(value[bad])}"
    elif kind == "string-table" and isinstance(value, dict):
        if {*map(type, value.values())} <= _STR:  # every value a plain string: found in C
            return f": {problem}" if field.check and (problem := field.check(value)) else None
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
