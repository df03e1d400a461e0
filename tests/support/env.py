"""What the heavier test tiers need from this machine, with one rule for when it is missing:
skip on a developer's machine, fail under CI=true (CI must never pass by skipping the real thing)."""

from __future__ import annotations

import os
import socket

import pytest


def require(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
