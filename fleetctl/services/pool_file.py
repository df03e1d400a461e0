"""Writing a pool's ``profile = "..."`` into the fleet file once a run completes, with tomlkit (comments and
layout kept), atomically; when the file changed since the run started or cannot be written, what to change by
hand instead."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolFileResult:
    written: bool  # the file says the profile now (written by this call, or already)
    detail: str  # one line for the operator


def digest(path: str) -> str | None:
    """The fleet file's sha256 when a run starts (None when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def write_pool_profile(path: str, pool: str, profile: str, expected_sha256: str | None) -> PoolFileResult:
    """Set ``profile`` in the ``[[pools]]`` table named ``pool``; nothing when it already says so."""
    import tomlkit

    by_hand = f'set profile = "{profile}" in the [[pools]] table with name = "{pool}" by hand'
    try:
        with open(path, "rb") as f:
            data = f.read()
        doc = tomlkit.parse(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as e:
        return PoolFileResult(False, f"{path}: cannot read the fleet file ({_why(e)}): {by_hand}")
    index, table = _pool_table(doc, pool)
    where = f"{path}:{_line(data, index)}" if index is not None else path
    if table is None:
        return PoolFileResult(False, f"{path}: no [[pools]] table named {pool} any more: {by_hand}")
    if table.get("profile") == profile:
        return PoolFileResult(True, f"{where}: pool {pool} already declares profile {profile}")
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        return PoolFileResult(False, f"{where}: the fleet file changed since the run started: {by_hand}")
    table["profile"] = profile
    try:
        import os

        from fleetctl.services.files import write_atomic

        write_atomic(path, tomlkit.dumps(doc).encode("utf-8"), mode=os.stat(path).st_mode & 0o777)
    except OSError as e:
        return PoolFileResult(False, f"{where}: cannot write the fleet file ({_why(e)}): {by_hand}")
    return PoolFileResult(True, f'{where}: pool {pool} now declares profile = "{profile}"')


def _pool_table(doc: Any, pool: str) -> tuple[int | None, Any]:
    from tomlkit.items import AoT

    pools = doc.get("pools")
    if not isinstance(pools, AoT | list):
        return None, None
    for i, table in enumerate(pools):
        if isinstance(table, dict) and table.get("name") == pool:
            return i, table
    return None, None


def _line(data: bytes, index: int) -> int | None:
    from fleetctl.core.tomldoc import read_toml

    try:
        return read_toml(data.decode("utf-8"), "").array_lines("pools")[index]
    except Exception:
        return None


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
