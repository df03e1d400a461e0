"""Untrusted text on a terminal: always shown as text, never as rich markup or a terminal escape.

What fleetctl prints for people is full of text it did not write: host names and addresses from the fleet file,
fleet and profile names, a ``--reason`` from the command line, errors and versions reported by hosts, records
read back from ``state.json``, snapshots and journals. The one rule: such text goes through ``text`` before it
becomes part of a rich markup string, and through ``visible`` before a plain write. Markup is escaped, and
control characters (ESC, CR, backspace, the C1 set, bidirectional overrides) are shown as ``\\x1b``-style
escapes, so nothing can restyle, move the cursor, retitle the terminal or hide what follows.

JSON and JUnit documents are not terminal text: they keep values exactly as they are.
"""

from __future__ import annotations

import re

# C0 and C1 control characters, DEL, and the invisible direction marks and overrides ("trojan source")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, newlines: bool = False) -> str:
    """``value`` as text whose control characters are visible (``\\x1b``); ``newlines`` keeps line breaks."""
    return (_UNSAFE_BUT_NEWLINE if newlines else _UNSAFE).sub(_shown, str(value))


def text(value: object, *, newlines: bool = False) -> str:
    """``value`` ready to be put into a rich markup string: control characters visible, markup escaped."""
    from rich.markup import escape

    return escape(visible(value, newlines=newlines))
