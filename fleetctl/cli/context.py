"""What every command gets: the settings from global options and the two consoles (stdout, stderr).

The consoles read rich markup (``[red]``) but no emoji codes (``:name:``), so a host named ``a:cd:b`` prints as
itself; text from files, hosts, arguments and journals goes into markup only through ``fleetctl.cli.safe``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.core.fleet import Fleet


@dataclass
class AppContext:
    fleet_path: str | None = None
    debug: bool = False
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def resolved_fleet_path(self) -> str:
        """``--fleet``, else ``$FLEETCTL_FLEET``, else ``./fleet.toml``. An empty ``--fleet ''`` is an error (a
        script's unset variable must not quietly mean ./fleet.toml); an empty ``$FLEETCTL_FLEET`` counts as unset."""
        from fleetctl.errors import UsageError

        if self.fleet_path is not None and not self.fleet_path.strip():
            raise UsageError("--fleet is empty: give the fleet file's path (or leave --fleet out for ./fleet.toml)")
        return self.fleet_path or self.env.get("FLEETCTL_FLEET") or "fleet.toml"

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return _unsqueezed(Console(soft_wrap=True, emoji=False), self.env)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return _unsqueezed(Console(stderr=True, emoji=False), self.env)

    def load_fleet(self) -> Fleet:
        """The fleet file, its pools' profiles checked (each exists, no model name served by two pools)."""
        from fleetctl.services.files import load_fleet

        fleet = load_fleet(self.resolved_fleet_path)
        if fleet.pools:  # a fleet without pools has no profile to check (nor to import the profile code for)
            from fleetctl.services.pools import pool_profiles

            pool_profiles(self.env, fleet)
        return fleet


def get_context(ctx: typer.Context) -> AppContext:
    """The AppContext the root callback stored; a bare one when a command is invoked on its own."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj


PIPE_WIDTH = 250


def _unsqueezed(console: Console, env: dict[str, str]) -> Console:
    """Piped or redirected output is read by grep and people, not fitted to a screen: tables there get room
    (as kubectl never cuts a name short), unless $COLUMNS says otherwise."""
    if not console.is_terminal and "COLUMNS" not in env:
        console.width = PIPE_WIDTH
    return console
