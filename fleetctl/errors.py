"""One error tree for fleetctl, and the exit codes it maps to.

Transports wrap library exceptions into these (``raise ... from e``); the CLI boundary prints one line per
error and exits with the documented code. Only ``--debug`` shows a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    HOSTS_FAILED = 3
    CHECK_FAILED = 4
    ROLLED_BACK = 5
    LOCKED = 6
    HALTED = 7  # a maintenance halted: hosts are left drained for a person
    INTERRUPTED = 130


class FleetError(Exception):
    """An expected failure: it carries a one-line message, an optional hint and its exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(FleetError):
    """A bad fleet file, profile, matrix or snapshot: ``FILE:LINE: what is wrong``."""

    exit_code = ExitCode.USAGE

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        where = path if line is None or path is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.path = path
        self.line = line
        self.reason = message


class UsageError(FleetError):
    """The command was asked for something it cannot do as asked."""

    exit_code = ExitCode.USAGE


class HostError(FleetError):
    """One host failed in an expected way. ``kind`` is a stable identifier (``unreachable``, ``auth``...)."""

    exit_code = ExitCode.HOSTS_FAILED

    def __init__(self, host: str, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {kind}: {message}", hint=hint)
        self.host = host
        self.kind = kind
        self.reason = message


class HostsFailed(FleetError):
    """Some hosts failed; each was already reported on its own."""

    exit_code = ExitCode.HOSTS_FAILED


class CheckFailed(FleetError):
    exit_code = ExitCode.CHECK_FAILED


class RolledBack(FleetError):
    exit_code = ExitCode.ROLLED_BACK


class Halted(FleetError):
    """A maintenance stopped where no automatic undo exists (a driver, a reboot): hosts stay drained."""

    exit_code = ExitCode.HALTED


class LockHeld(FleetError):
    exit_code = ExitCode.LOCKED


class RouterError(FleetError):
    """The local vllm-router could not be reached, refused a change, or does not hold what it should.

    The message always names the router's URL: ``router http://127.0.0.1:30000 unreachable: connection refused``.
    """

    exit_code = ExitCode.HOSTS_FAILED

    def __init__(self, url: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"router {url} {message}", hint=hint)
        self.url = url
        self.reason = message
