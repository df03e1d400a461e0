"""Shared plumbing for the lab tier: can the lab run here, and `lab_factory`, labs torn down at session end."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _labkit() -> None:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))


def lab_unavailable() -> str | None:
    """Why the lab cannot run on this machine (root, sshd, ip, gcc...), or None when it can."""
    _labkit()
    from labkit.preflight import problems

    found = problems()
    return "; ".join(found) if found else None


def require_lab() -> None:
    """Skip the calling test when the lab cannot run here; under CI=true fail it instead, with the reason."""
    from tests.support.env import require

    reason = lab_unavailable()
    require(reason is None, f"the lab tier cannot run here: {reason}")


def _free_network(index: int) -> tuple[str, str]:
    """A prefix and /24 that no interface or namespace on this machine uses (pytest runs may overlap)."""
    from labkit import netns

    token = os.getpid() % 10000
    used = [
        ipaddress.IPv4Interface(cidr).network for entry in netns.links().values() for cidr in netns.addresses(entry)
    ]
    spaces = netns.namespaces()
    for attempt in range(256):
        prefix = f"t{(token + attempt) % 10000:04d}{chr(ord('a') + index % 26)}"
        subnet = ipaddress.IPv4Network(f"10.{224 + index % 16}.{(token + attempt) % 256}.0/24")
        if not any(subnet.overlaps(net) for net in used) and not any(s.startswith(f"{prefix}-") for s in spaces):
            return prefix, str(subnet)
    raise RuntimeError("no free lab subnet left in 10.224.0.0/12")


@pytest.fixture(scope="session")
def lab_factory():
    """`make(spec, name) -> LabInfo`: spec is a spec file path or a dict as the TOML reads; each name gets its
    own folder, prefix and subnet. The same name again returns the same lab. All are taken down at the end."""
    require_lab()
    _labkit()
    from labkit.lab import Lab
    from labkit.spec import load_spec, parse_spec

    labs: dict[str, tuple[Any, Any]] = {}  # name → (spec as given, Lab)

    def make(spec: str | os.PathLike | dict, name: str):
        base = parse_spec(spec, source=f"<lab {name}>") if isinstance(spec, dict) else load_spec(spec)
        if name in labs and labs[name][0].to_dict()["hosts"] != base.to_dict()["hosts"]:
            raise ValueError(f"lab {name!r} already exists with another spec")
        if name not in labs:
            # Short: dockerd's sockets under <root>/hosts/<host>/docker must fit in 107 characters.
            root = Path(tempfile.mkdtemp(prefix=f"fl-{name[:16]}-", dir="/tmp"))
            labs[name] = (base, Lab(root, base.with_network(*_free_network(len(labs)))))
        return labs[name][1].up()

    yield make
    failures = []
    for _, lab in labs.values():
        try:
            lab.down()
            shutil.rmtree(lab.paths.root, ignore_errors=True)  # what tests left beside the lab; no mounts remain
        except Exception as e:
            failures.append(f"{lab.paths.root}: {e}")
    if failures:
        pytest.fail("lab teardown failed: " + "; ".join(failures), pytrace=False)
