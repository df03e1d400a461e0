"""The command list. Each module adds its commands to the app; heavy libraries load inside the commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from fleetctl.cli import (
        check_cmd,
        door_cmd,
        hosts_cmd,
        inventory_cmd,
        maintain_cmd,
        router_cmd,
        serve_cmd,
        upgrade_cmd,
    )

    hosts_cmd.register(app)
    inventory_cmd.register(app)
    check_cmd.register(app)
    serve_cmd.register(app)
    upgrade_cmd.register(app)
    maintain_cmd.register(app)
    router_cmd.register(app)
    door_cmd.register(app)
