"""Timestamps as annotation tools write them -> aware UTC datetimes."""

from __future__ import annotations

import datetime as dt
import re

# "Mon Aug 22 2022 13:52:52 GMT-0700 (Pacific Daylight Time)": JavaScript's Date.toString(),
# found in real Ground Truth / Lookout for Vision manifests.
_JS_DATE = re.compile(
    r"^[A-Za-z]{3} ([A-Za-z]{3}) (\d{1,2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT([+-]\d{4})"
)


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 (naive means UTC) or JavaScript Date strings; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"not a date string: {text!r}")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        match = _JS_DATE.match(text)
        if not match:
            parsed = dt.datetime.fromisoformat(text.strip())  # raises ValueError with the reason
        else:
            month, day, year, hh, mm, ss, offset = match.groups()
            parsed = dt.datetime.strptime(
                f"{month} {day} {year} {hh}:{mm}:{ss} {offset}", "%b %d %Y %H:%M:%S %z"
            )
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # year 1 or 9999 shifted out of range by its offset
        raise ValueError(f"{text!r} is out of the representable range") from None


def format_timestamp(value: dt.datetime) -> str:
    """UTC ISO form with milliseconds, as Ground Truth writes creation-date."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def cached_timestamp(cache: dict, text: str, limit: int = 1 << 16) -> dt.datetime | None:
    """parse_timestamp(text) through `cache` (a manifest repeats a few creation dates thousands
    of times); None when `text` is no date. The cache is emptied at `limit` entries: bounded."""
    found = cache.get(text)
    if found is None:
        try:
            found = parse_timestamp(text)
        except ValueError:
            return None
        if len(cache) >= limit:
            cache.clear()
        cache[text] = found
    return found
