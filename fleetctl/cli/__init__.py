"""The command line: typer commands that parse arguments, call services and render results."""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point. ``fleetctl --version`` answers before the CLI framework is even imported."""
    if sys.argv[1:] == ["--version"]:
        from fleetctl import __version__

        print(f"fleetctl {__version__}")
        return
    from fleetctl.cli.app import main as run

    run()
