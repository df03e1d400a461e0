"""The remote probe, shipped to hosts as text on stdin: the probe script plus a compressed pynvml."""

from __future__ import annotations

import base64
import importlib.util
import threading
import zlib
from pathlib import Path

PROBE_COMMAND = "python3 -I -"
_built: list[bytes] = []
_lock = threading.Lock()


def probe_payload() -> bytes:
    """What ``python3 -`` reads on the host: ``PYNVML_BUNDLE = "..."`` then the probe script. Built once per
    process, even when every fan-out thread asks for it at the same moment."""
    with _lock:
        if not _built:
            script = (Path(__file__).parent / "probe.py").read_text()
            _built.append(f"PYNVML_BUNDLE = {_pynvml_bundle()!r}\n{script}".encode())
        return _built[0]


def _pynvml_bundle() -> str | None:
    spec = importlib.util.find_spec("pynvml")
    if spec is None or spec.origin is None:
        return None
    source = Path(spec.origin).read_bytes()
    return base64.b64encode(zlib.compress(source, 6)).decode("ascii")
