"""Files on this machine: reading the fleet file, and writing state atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetfile import parse_fleet
from fleetctl.errors import ConfigError

T = TypeVar("T")

NO_FLEET_HINT = "use --fleet or $FLEETCTL_FLEET"


def load_fleet(path: str) -> Fleet:
    """Read and parse the fleet file at ``path`` (``~`` expanded); ConfigError (exit 2) when it is missing or bad."""
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise ConfigError(f"no such fleet file ({NO_FLEET_HINT})", path=path) from e
    except OSError as e:
        raise ConfigError(f"cannot read the fleet file: {e.strerror or e}", path=path) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", path=path, line=line) from e
    return parse_fleet(text, path)


def read_json_document(path: str, what: str, parse: Callable[[Any], T], errors: type[Exception]) -> T:
    """A versioned JSON file parsed by ``parse``; every problem is ConfigError with the path (and line)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what}: {getattr(e, 'strerror', None) or e}", path=path) from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON: {e.msg}", path=path, line=e.lineno) from e
    try:
        return parse(doc)
    except errors as e:
        raise ConfigError(str(e), path=path) from e


def write_atomic(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` all at once: a temporary file in the same folder, fsync, rename, fsync the
    folder. A reader sees the old content or the new, never a part; a crash leaves no half-written file.
    The folder must exist."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
