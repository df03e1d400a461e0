"""``~/.ssh/config`` read as OpenSSH reads it, for ``core.sshtarget`` to resolve hosts with.

paramiko's ``SSHConfig`` does the matching (first value wins, ``Host`` patterns with negation, ``Match
host/originalhost/user/localuser/all/canonical/final``) but ignores ``Include``. So this module first flattens
the files into one text: ``Include`` (globs, relative paths in ``~/.ssh``, nested up to 16 deep) is replaced by
the included lines; an ``Include`` inside a ``Host``/``Match`` block applies only under that block's condition
(its own blocks become ``Match originalhost OUTER <own criteria>``), and the block resumes after it.

Two things paramiko would do are refused instead:
- ``Match exec``: fleetctl never runs a command from ssh_config (paramiko would put ``%h``, i.e. text from the
  fleet file, into a shell). A host the block would apply to gets ``FILE:LINE: Match exec is not supported``.
- ``%`` tokens and ``~``: paramiko expands a few, some unlike OpenSSH (``%C``, ``%%``, ``$HOME``); they are
  kept as written here and expanded by ``core.sshtarget`` as OpenSSH does.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.sshtarget import LocalInfo
from fleetctl.errors import ConfigError

MAX_INCLUDE_DEPTH = 16
_LINE = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.*)")
_SUPPORTED_MATCH = {"all", "canonical", "final", "host", "originalhost", "user", "localuser"}
_MARKER = "fleetctlunsupported"  # a keyword no ssh_config has: "this block needs what fleetctl refuses"
# paramiko would expand these itself; hide them from it and put them back after the lookup.
_HIDE = str.maketrans({"%": "\x01", "~": "\x02"})
_SHOW = str.maketrans({"\x01": "%", "\x02": "~"})


@dataclass
class _Flat:
    lines: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # messages, indexed by the marker's value


def load_ssh_config(path: str = "~/.ssh/config") -> Callable[[str], dict[str, Any]]:
    """A lookup over the user's ssh_config (empty when there is none); ConfigError when a file is unreadable."""
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return lambda alias: {}
    return SshConfigFiles.read(full).lookup


def local_info() -> LocalInfo:
    """This machine's user, home (from the password database, as OpenSSH's ``~`` and ``%d``), uid, host name."""
    import getpass
    import pwd
    import socket

    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        home = os.path.expanduser("~")
    return LocalInfo(user=getpass.getuser(), home=home, uid=os.getuid(), hostname=socket.gethostname())


class SshConfigFiles:
    """The flattened configuration and a paramiko ``SSHConfig`` over it."""

    def __init__(self, flat: _Flat, path: str) -> None:
        from fleetctl.transport.paramiko_lite import paramiko

        self.text = "\n".join(flat.lines) + "\n"
        self.refusals = flat.refusals
        try:
            self._config = paramiko.SSHConfig.from_text(self.text)
        except paramiko.ssh_exception.ConfigParseError as e:
            raise ConfigError(f"ssh_config: {e}", path=path) from e

    @classmethod
    def read(cls, path: str, ssh_dir: str | None = None) -> SshConfigFiles:
        """``path`` and what it includes; relative includes are looked for in ``ssh_dir`` (``~/.ssh``)."""
        flat = _Flat()
        _flatten(path, ssh_dir or os.path.expanduser("~/.ssh"), None, 0, flat)
        return cls(flat, path)

    def lookup(self, alias: str) -> dict[str, Any]:
        """What ssh_config says for ``alias``: lowercased keys, values as written (tokens not expanded)."""
        found = self._config.lookup(alias)
        if _MARKER in found:
            raise ConfigError(self.refusals[int(found[_MARKER])])
        return {k: _show(v) for k, v in found.items()}


def _show(value: Any) -> Any:
    if isinstance(value, list):
        return [v.translate(_SHOW) for v in value]
    return value.translate(_SHOW) if isinstance(value, str) else value


def _flatten(path: str, ssh_dir: str, outer: list[str] | None, depth: int, out: _Flat, marker: str = "") -> None:
    """Append ``path``'s lines to ``out``; ``outer`` is the Match criteria the file is included under, ``marker``
    the refusal line of an including block fleetctl cannot evaluate (it holds for everything included)."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"Include nested more than {MAX_INCLUDE_DEPTH} deep", path=path)
    lines = _read_lines(path)
    header = _with_marker(_header(outer, []), marker)
    if outer is not None:
        out.lines.append(header)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ConfigError(f"cannot parse {line[:60]!r}", path=path, line=number)
        key, value = match.group(1).lower(), match.group(2).strip()
        if key in ("host", "match"):
            header = _block(key, value, outer, path, number, out, marker)
        elif key == "include":
            first, _, block_marker = header.partition("\n")
            for included in _include_paths(value, ssh_dir, path, number):
                _flatten(included, ssh_dir, _criteria_of(first, path, number), depth + 1, out, block_marker)
            out.lines.append(header)  # the including block goes on after the Include
        else:
            out.lines.append(line.translate(_HIDE))


def _with_marker(header: str, marker: str) -> str:
    return f"{header}\n{marker}" if marker else header


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read ssh_config: {getattr(e, 'strerror', None) or e}", path=path) from e


def _block(key: str, value: str, outer: list[str] | None, path: str, line: int, out: _Flat, marker: str) -> str:
    """Start a Host or Match block; returns its header as written into the flat text (with its refusal line)."""
    criteria = _criteria(key, value, path, line)
    refused = [c for c in criteria[::2] if c.lstrip("!") not in _SUPPORTED_MATCH]
    if refused:
        criteria = _without(criteria, refused)
    header = _header(outer, criteria) if (outer is not None or key == "match") else f"Host {value}"
    if refused and not marker:
        what = refused[0].lstrip("!")
        reason = "fleetctl never runs commands from ssh_config" if what == "exec" else "fleetctl does not evaluate it"
        out.refusals.append(f"{path}:{line}: Match {what} is not supported ({reason}); use Match host or originalhost")
        marker = f"{_MARKER} {len(out.refusals) - 1}"
    header = _with_marker(header, marker)
    out.lines.append(header)
    return header


def _criteria(key: str, value: str, path: str, line: int) -> list[str]:
    """A block's condition as Match criteria pairs (``Host a b`` is ``originalhost a,b``)."""
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise ConfigError(f"cannot parse {key} line: {e}", path=path, line=line) from e
    if not words:
        raise ConfigError(f"{key} needs an argument", path=path, line=line)
    if key == "host":
        return ["originalhost", ",".join(words)]
    criteria: list[str] = []
    while words:
        word = words.pop(0)
        if word.lstrip("!").lower() in ("all", "canonical", "final"):
            criteria += [word.lower(), ""]
        elif not words:
            raise ConfigError(f"Match {word} needs an argument", path=path, line=line)
        else:
            criteria += [word.lower(), words.pop(0)]
    return criteria


def _without(criteria: list[str], drop: list[str]) -> list[str]:
    pairs = [(k, v) for k, v in zip(criteria[::2], criteria[1::2], strict=True) if k not in drop]
    return [x for pair in pairs for x in pair]


def _header(outer: list[str] | None, criteria: list[str]) -> str:
    """A Match line for ``outer`` AND ``criteria`` (``Match all`` when there is no condition at all)."""
    pairs = list(zip((outer or [])[::2], (outer or [])[1::2], strict=True))
    pairs += list(zip(criteria[::2], criteria[1::2], strict=True))
    pairs = [(k, v) for k, v in pairs if k != "all"]
    if not pairs:
        return "Match all"
    return "Match " + " ".join(f"{k} {shlex.quote(v)}" if v else k for k, v in pairs)


def _criteria_of(header: str, path: str, line: int) -> list[str] | None:
    """The condition of the block a line is in (None at the top of the outermost file)."""
    key, _, value = header.partition(" ")
    if header == "Match all":
        return None
    return _criteria(key.lower(), value, path, line)


def _include_paths(value: str, ssh_dir: str, path: str, line: int) -> list[str]:
    try:
        patterns = shlex.split(value)
    except ValueError as e:
        raise ConfigError(f"cannot parse Include: {e}", path=path, line=line) from e
    found: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = os.path.join(ssh_dir, pattern)
        found += sorted(glob.glob(pattern))  # no match: nothing included, as in OpenSSH
    return [p for p in found if not os.path.isdir(p)]
