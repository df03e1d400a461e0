"""The fleet's state records on disk: ``<state>/state.json``, read whole, written atomically.

``update_state`` is the only way to change them: read, apply a pure function, write, all under an ``flock`` on
``<state>/state.lock`` so that two fleetctl processes never lose each other's records.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState, StateError
from fleetctl.services.files import read_json_document, write_atomic

STATE_FILE = "state.json"
STATE_LOCK = "state.lock"


def state_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, STATE_FILE)


def load_state(fleet: Fleet) -> FleetState:
    """The recorded state; an empty one when there is no file yet; ConfigError naming the file when it is bad."""
    try:
        return read_json_document(state_path(fleet), "the state file", FleetState.from_dict, StateError)
    except FileNotFoundError:
        return FleetState()


def save_state(fleet: Fleet, state: FleetState) -> str:
    """Write the state atomically; prefer ``update_state``, which also holds the state lock."""
    os.makedirs(fleet.state_dir, exist_ok=True)
    path = state_path(fleet)
    write_atomic(path, (json.dumps(state.to_dict(), indent=2) + "\n").encode())
    return path


def update_state(fleet: Fleet, change: Callable[[FleetState], FleetState]) -> FleetState:
    """Read, ``change``, write, under the state lock (waiting for another holder); returns the new state."""
    os.makedirs(fleet.state_dir, exist_ok=True)
    fd = os.open(os.path.join(fleet.state_dir, STATE_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = load_state(fleet)
        after = change(before)
        if after != before:
            save_state(fleet, after)
        return after
    finally:
        os.close(fd)  # closing the descriptor releases the flock
