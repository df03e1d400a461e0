from datetime import UTC, datetime, timedelta, timezone

import pytest

from fleetctl.core.timefmt import parse_utc, seconds_between, utc_iso


def test_utc_iso_seconds_and_millis():
    moment = datetime(2026, 11, 30, 12, 53, 19, 123456, tzinfo=UTC)
    assert utc_iso(moment) == "2026-11-30T12:53:19Z"
    assert utc_iso(moment, millis=True) == "2026-11-30T12:53:19.123Z"


def test_utc_iso_converts_other_zones():
    moment = datetime(2026, 11, 30, 13, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert utc_iso(moment) == "2026-11-30T12:00:00Z"


def test_parse_round_trip_and_naive_is_utc():
    assert parse_utc("2026-11-30T12:53:19.123Z") == datetime(2026, 11, 30, 12, 53, 19, 123000, tzinfo=UTC)
    assert parse_utc("2026-11-30T12:53:19") == datetime(2026, 11, 30, 12, 53, 19, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "yesterday", 123, None])
def test_parse_rejects_non_timestamps(bad):
    with pytest.raises(ValueError):
        parse_utc(bad)


@pytest.mark.parametrize(
    ("start", "end", "seconds"),
    [
        ("2026-11-30T12:00:00Z", "2026-11-30T12:00:01.25Z", 1.2),
        (None, "2026-11-30T12:00:00Z", None),
        ("2026-11-30T12:00:00Z", "garbage", None),
    ],
)
def test_seconds_between(start, end, seconds):
    assert seconds_between(start, end) == seconds
