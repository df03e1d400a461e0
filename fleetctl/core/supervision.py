"""The router supervisor's decisions as pure functions: how long to wait before a restart, how a death reads,
and the systemd unit that runs ``fleetctl router run``."""

from __future__ import annotations

import signal
from dataclasses import dataclass

# A router that ran this long before it died is not crash-looping: restart it at once.
STABLE_S = 10.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


def restart_delay(uptime_s: float, failures: int) -> float:
    """Seconds to wait before starting vllm-router again. ``failures``: deaths in a row, each before it had run
    STABLE_S (this one included). The first restart, and any after a stable run, is immediate; a crash loop
    backs off, doubling from FIRST_DELAY_S up to MAX_DELAY_S."""
    if uptime_s >= STABLE_S or failures <= 1:
        return 0.0
    return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (failures - 2)))


def death_reason(returncode: int, answered: bool) -> str:
    """``killed by SIGKILL`` / ``exited with status 1``; ``while starting`` when it never answered."""
    if returncode < 0:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    return how if answered else f"{how} while starting"


@dataclass(frozen=True)
class UnitSpec:
    """What the systemd unit runs: this Python, the fleet file (absolute), as which user."""

    python: str
    fleet_path: str
    user: str
    fleet_name: str


_FORBIDDEN = set("\"\\\n\r\t%$;`'") | {chr(c) for c in range(32)}


def _checked(what: str, value: str) -> str:
    bad = sorted({c for c in value if c in _FORBIDDEN or c == " "})
    if not value or bad:
        shown = "".join(bad).encode("unicode_escape").decode()
        raise ValueError(f"{what} {value!r} cannot go into a systemd unit as is (characters {shown!r})")
    return value


def systemd_unit(spec: UnitSpec) -> str:
    """A unit for ``fleetctl router run``: restarted always by systemd, stopped with SIGTERM (the supervisor
    stops vllm-router first). ValueError when a path or the user holds a character the unit cannot carry."""
    python = _checked("the Python path", spec.python)
    fleet_path = _checked("the fleet file path", spec.fleet_path)
    user = _checked("the user", spec.user)
    if not fleet_path.startswith("/") or not python.startswith("/"):
        raise ValueError("the fleet file and Python paths must be absolute in a systemd unit")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.fleet_name)
    return "\n".join(
        [
            "[Unit]",
            f"Description=fleetctl router for fleet {name} (vllm-router, supervised)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"User={user}",
            f"ExecStart={python} -m fleetctl --fleet {fleet_path} router run",
            "Restart=always",
            "RestartSec=2",
            "KillSignal=SIGTERM",
            "KillMode=mixed",
            "TimeoutStopSec=30",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )
