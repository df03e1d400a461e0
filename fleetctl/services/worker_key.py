"""The fleet's worker key: the one secret vLLM (``VLLM_API_KEY``), vllm-router (``--api-key``) and the front door
share, so nothing but fleetctl's own side reaches a GPU host's vLLM port.

Generated once into the state folder (``worker.key``, mode 0600, readable by its owner only). Never printed,
logged or journaled: callers hand it to processes through their environment or an HTTP header, never argv.
Rotating it means serving every host again with the new key (an upgrade of every pool).
"""

from __future__ import annotations

import os
import secrets

from fleetctl.core.fleet import Fleet
from fleetctl.errors import ConfigError

FILE_NAME = "worker.key"
ENV_NAME = "VLLM_API_KEY"  # what vLLM reads when --api-key is not given


def worker_key_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, FILE_NAME)


def worker_key(fleet: Fleet) -> str:
    """The fleet's worker key, made on first use; ConfigError when the file is unreadable or others can read it."""
    path = worker_key_path(fleet)
    os.makedirs(fleet.state_dir, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"fk-{secrets.token_urlsafe(32)}\n")
        f.flush()
        os.fsync(f.fileno())
    return _read(path)


def _read(path: str) -> str:
    try:
        info = os.stat(path)
        if info.st_mode & 0o077:
            raise ConfigError(
                "the worker key is readable by others; it was not used",
                path=path,
                hint=f"chmod 600 {path}",
            )
        with open(path, encoding="ascii") as f:
            key = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the worker key: {e.strerror}", path=path) from e
    except UnicodeDecodeError as e:
        raise ConfigError("the worker key file is not ASCII", path=path) from e
    if not key or any(c.isspace() or not c.isprintable() for c in key):
        raise ConfigError("the worker key file holds no key (one line of printable characters)", path=path)
    return key


def fleet_worker_key(fleet: Fleet) -> str | None:
    """The worker key when the fleet has a front door (then vLLM and vllm-router require it), else None."""
    return worker_key(fleet) if fleet.router.door is not None else None
