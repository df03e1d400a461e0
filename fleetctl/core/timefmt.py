"""The one way fleetctl writes and reads UTC timestamps: ISO 8601 with a ``Z`` (``2026-11-30T12:53:19Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime, *, millis: bool = False) -> str:
    """``moment`` (aware) as ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """The inverse of ``utc_iso``; ValueError for anything that is not an ISO 8601 timestamp."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (one decimal), or None when either is missing or unreadable."""
    if not start or not end:
        return None
    try:
        return round((parse_utc(end) - parse_utc(start)).total_seconds(), 1)
    except ValueError:
        return None
