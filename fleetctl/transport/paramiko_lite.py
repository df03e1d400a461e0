"""paramiko, imported without ``invoke``.

paramiko imports invoke (and with it asyncio, unittest.mock and a vendored YAML) only to run ``Match exec``
commands of ssh_config, which fleetctl never lets it run (``transport.sshconfig`` refuses them). Blocking that
optional import saves about a quarter of the fixed CPU cost of every SSH command. If something imported invoke
or paramiko first, nothing changes.
"""

from __future__ import annotations

import sys

if "paramiko" not in sys.modules and "invoke" not in sys.modules:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` raises ImportError: paramiko copes
    try:
        import paramiko
    finally:
        del sys.modules["invoke"]  # anyone else may still import it

import paramiko

__all__ = ["paramiko"]
