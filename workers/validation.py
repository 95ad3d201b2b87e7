"""Checks on task arguments, run before anything touches MongoDB.

Every value that reaches a query is a plain, bounded string or integer, so a
caller can never smuggle a MongoDB operator (``{"$ne": null}``) into a filter.
Each check raises a ``Rejected`` subclass that names the argument.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import phonenumbers
from phonenumbers import timezone as phone_timezone

from callqueue.workers.exceptions import InvalidArgument, Rejected, TooLarge
from callqueue.workers.hours import (
    DEFAULT_LAST_CALL_SECONDS, DEFAULT_ZONE, UNKNOWN_ZONE_POLICIES, WEEKDAYS, CallingHours, is_zone, parse_range,
)
from callqueue.workers.models import Callback, RetryRule

MAX_NESTING_DEPTH = 8


def require_id(name: str, value: Any, max_length: int) -> str:
    """Return ``value`` if it is a usable id: a non-empty, bounded, plain string.

    Ids may contain any printable character except that they must not start
    with ``$`` (so they can never read as an operator or field path).
    """
    text = require_text(name, value, max_length)
    if text.startswith("$"):
        raise InvalidArgument(f"{name} must not start with '$'", argument=name)
    return text


def require_text(name: str, value: Any, max_length: int) -> str:
    """Return ``value`` if it is a non-empty string without control characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {_type_name(value)}", argument=name)
    if len(value) > max_length:
        raise TooLarge(f"{name} is longer than {max_length} characters", argument=name)
    if not value.strip():
        raise InvalidArgument(f"{name} must not be empty", argument=name)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidArgument(f"{name} must not contain control characters", argument=name)
    return value


def optional_id(name: str, value: Any, max_length: int) -> str | None:
    """Like ``require_id`` but ``None`` passes through."""
    return None if value is None else require_id(name, value, max_length)


def require_token(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive integer (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, got {_type_name(value)}", argument=name)
    if not 1 <= value < 2**62:
        raise InvalidArgument(f"{name} must be a positive integer", argument=name)
    return value


def require_int(name: str, value: Any, low: int = -(2**31), high: int = 2**31 - 1) -> int:
    """Return ``value`` if it is an integer within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, got {_type_name(value)}", argument=name)
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}", argument=name)
    return value


def require_document(name: str, value: Any, max_bytes: int) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object safe to store as a MongoDB sub-document.

    Keys must be non-empty strings without a leading ``$``, a ``.`` or a NUL;
    nesting is limited to ``MAX_NESTING_DEPTH`` levels; the compact JSON form
    must fit in ``max_bytes``.
    """
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be an object, got {_type_name(value)}", argument=name)
    _check_keys(name, value, depth=1)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise TooLarge(f"{name} is {size} bytes, more than {max_bytes}", argument=name)
    return value


def require_list(name: str, value: Any, max_items: int) -> list[Any]:
    """Return ``value`` if it is a non-empty list of at most ``max_items`` items."""
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list, got {_type_name(value)}", argument=name)
    if len(value) > max_items:
        raise TooLarge(f"{name} has {len(value)} items, more than {max_items}", argument=name)
    if not value:
        raise InvalidArgument(f"{name} must not be empty", argument=name)
    return value


def require_moment(name: str, value: Any) -> datetime:
    """Return ``value``, an ISO-8601 time with a zone (``2026-11-28T17:00:00+01:00``), in UTC at ms precision."""
    text = require_text(name, value, 64)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidArgument(f"{name} must be an ISO-8601 time such as 2026-11-28T17:00:00+01:00, "
                              f"got {text!r}", argument=name) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgument(f"{name} must carry a time zone (Z or an offset such as +01:00)", argument=name)
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidArgument(f"{name} is out of range, got {text!r}", argument=name) from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def require_ids(name: str, value: Any, max_length: int, max_items: int) -> tuple[str, ...]:
    """Return ``value``, a list of ids (see ``require_id``) of at most ``max_items``, without repeats, in order."""
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list of strings, got {_type_name(value)}", argument=name)
    if len(value) > max_items:
        raise TooLarge(f"{name} has {len(value)} items, more than {max_items}", argument=name)
    ids = [require_id(f"{name}[{index}]", item, max_length) for index, item in enumerate(value)]
    return tuple(dict.fromkeys(ids))


def optional_callback(label: str, callback_at: Any, callback_assistant: Any, max_id_length: int,
                      max_ahead_seconds: int) -> Callback | None:
    """The callback a completion asks for, or None.

    ``callback_at`` (see ``require_moment``) may be in the past (due at once)
    but at most ``max_ahead_seconds`` ahead; ``callback_assistant`` needs it.
    ``label`` prefixes the argument names (a batch item's ``items[3].``).
    """
    assistant = optional_id(f"{label}callback_assistant", callback_assistant, max_id_length)
    if callback_at is None:
        if assistant is not None:
            raise InvalidArgument(f"{label}callback_assistant needs {label}callback_at",
                                  argument=f"{label}callback_assistant")
        return None
    moment = require_moment(f"{label}callback_at", callback_at)
    if moment > datetime.now(timezone.utc) + timedelta(seconds=max_ahead_seconds):
        raise InvalidArgument(f"{label}callback_at is more than {max_ahead_seconds} seconds ahead",
                              argument=f"{label}callback_at")
    return Callback(moment, assistant)


def require_retry_rules(value: Any, max_id_length: int, max_rules: int, max_delay_seconds: int,
                        max_attempts: int) -> tuple[RetryRule, ...]:
    """``{outcome: {"delay_seconds", "max_attempts"}}`` as rules; every fault names the argument ``retry_rules``."""
    if not isinstance(value, dict):
        raise InvalidArgument("retry_rules must be an object of outcome -> rule", argument="retry_rules")
    if len(value) > max_rules:
        raise TooLarge(f"retry_rules has more than {max_rules} outcomes", argument="retry_rules")
    try:
        return tuple(_retry_rule(outcome, rule, max_id_length, max_delay_seconds, max_attempts)
                     for outcome, rule in value.items())
    except Rejected as exc:
        raise type(exc)(exc.message, argument="retry_rules") from None


def _retry_rule(outcome: str, rule: Any, max_id_length: int, max_delay_seconds: int,
                max_attempts: int) -> RetryRule:
    label = f"retry_rules[{outcome!r}]"
    require_id("an outcome in retry_rules", outcome, max_id_length)
    if not isinstance(rule, dict) or set(rule) != {"delay_seconds", "max_attempts"}:
        raise InvalidArgument(f'{label} must be {{"delay_seconds": n, "max_attempts": n}}')
    return RetryRule(outcome, require_int(f"{label}.delay_seconds", rule["delay_seconds"], 0, max_delay_seconds),
                     require_int(f"{label}.max_attempts", rule["max_attempts"], 1, max_attempts))


def require_outcome_list(value: Any, max_id_length: int, max_outcomes: int) -> tuple[str, ...]:
    """``allowed_outcomes``: a list of outcome ids (``require_ids``), without repeats; ``[]`` removes the list."""
    if isinstance(value, list) and not value:
        return ()
    return require_ids("allowed_outcomes", value, max_id_length, max_outcomes)


def require_allowed_outcome(name: str, outcome: str, allowed: tuple[str, ...]) -> str:
    """``outcome`` if the session allows it: any outcome when ``allowed`` is empty (no list), else one of them."""
    if allowed and outcome not in allowed:
        raise InvalidArgument(f"{name} {outcome!r} is not one of this session's outcomes: {', '.join(allowed)}",
                              argument=name, allowed_outcomes=list(allowed))
    return outcome


def _check_keys(name: str, value: Any, depth: int) -> None:
    if depth > MAX_NESTING_DEPTH:
        raise InvalidArgument(f"{name} is nested deeper than {MAX_NESTING_DEPTH} levels", argument=name)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\0" in key:
                raise InvalidArgument(
                    f"{name} has an unusable key {key!r} (no leading '$', no '.', not empty)",
                    argument=name,
                )
            _check_keys(name, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_keys(name, item, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise InvalidArgument(f"{name} holds a {_type_name(value)}, which is not JSON", argument=name)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise InvalidArgument(f"{name} holds an integer too large for MongoDB", argument=name)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "integer", float: "number", type(None): "null"}.get(type(value), type(value).__name__)


CALLING_HOURS_KEYS = frozenset({"days", "holidays", "default_zone", "unknown_zone", "callbacks_outside_hours",
                                "last_call_seconds"})


def require_calling_hours(value: Any, max_ranges_per_day: int, max_holidays: int) -> CallingHours:
    """A session's calling hours (see ``workers.hours``); every fault names the argument ``calling_hours``.

    ``{"days": {"mon": ["09:00-20:00"], ...}, "holidays": ["2026-12-25"], "default_zone": "America/New_York",
    "unknown_zone": "default_zone" | "not_called", "callbacks_outside_hours": false, "last_call_seconds": 60}``.
    A weekday left out has no calling hours; ranges of one day may not overlap.
    """
    try:
        return _calling_hours(value, max_ranges_per_day, max_holidays)
    except Rejected as exc:
        raise type(exc)(exc.message, argument="calling_hours") from None


def _calling_hours(value: Any, max_ranges_per_day: int, max_holidays: int) -> CallingHours:
    if not isinstance(value, dict):
        raise InvalidArgument(f"calling_hours must be an object or null, got {_type_name(value)}")
    unknown = set(value) - CALLING_HOURS_KEYS
    if unknown:
        raise InvalidArgument(f"calling_hours has unknown fields {sorted(map(str, unknown))}")
    days = value.get("days")
    if not isinstance(days, dict) or set(days) - set(WEEKDAYS):
        raise InvalidArgument(f"calling_hours.days must be an object whose keys are among {', '.join(WEEKDAYS)}")
    ranges = tuple(_day_ranges(name, days.get(name) or [], max_ranges_per_day) for name in WEEKDAYS)
    holidays = value.get("holidays") or []
    if not isinstance(holidays, list):
        raise InvalidArgument("calling_hours.holidays must be a list of dates such as 2026-12-25")
    if len(holidays) > max_holidays:
        raise TooLarge(f"calling_hours.holidays has {len(holidays)} dates, more than {max_holidays}")
    policy = value.get("unknown_zone", DEFAULT_ZONE)
    if policy not in UNKNOWN_ZONE_POLICIES:
        raise InvalidArgument(f"calling_hours.unknown_zone must be one of {', '.join(UNKNOWN_ZONE_POLICIES)}")
    outside = value.get("callbacks_outside_hours", False)
    if not isinstance(outside, bool):
        raise InvalidArgument("calling_hours.callbacks_outside_hours must be true or false")
    return CallingHours(
        days=ranges,
        default_zone=require_zone("calling_hours.default_zone", value.get("default_zone")),
        holidays=frozenset(_holiday(index, day) for index, day in enumerate(holidays)),
        unknown_zone=policy,
        callbacks_outside_hours=outside,
        last_call_seconds=require_int("calling_hours.last_call_seconds",
                                      value.get("last_call_seconds", DEFAULT_LAST_CALL_SECONDS), 0, 3600),
    )


def _day_ranges(name: str, value: Any, max_ranges: int) -> tuple[tuple[int, int], ...]:
    label = f"calling_hours.days.{name}"
    if not isinstance(value, list):
        raise InvalidArgument(f"{label} must be a list of ranges such as \"09:00-20:00\"")
    if len(value) > max_ranges:
        raise TooLarge(f"{label} has {len(value)} ranges, more than {max_ranges}")
    parsed = []
    for index, text in enumerate(value):
        if not isinstance(text, str) or len(text) > 32:
            raise InvalidArgument(f"{label}[{index}] must be a string such as \"09:00-20:00\"")
        try:
            parsed.append(parse_range(text))
        except ValueError as exc:
            raise InvalidArgument(f"{label}[{index}]: {exc}") from None
    ordered = sorted(parsed)
    for (_, end), (start, _) in zip(ordered, ordered[1:]):
        if start < end:
            raise InvalidArgument(f"{label} has overlapping ranges")
    return tuple(ordered)


def _holiday(index: int, value: Any) -> date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidArgument(f"calling_hours.holidays[{index}] must be a date such as 2026-12-25")


def require_zone(name: str, value: Any) -> str:
    """An IANA time zone name this worker knows (``America/Chicago``); anything else is refused."""
    if not isinstance(value, str) or not is_zone(value):
        shown = value if isinstance(value, str) else _type_name(value)
        raise InvalidArgument(f"{name} must be an IANA time zone such as America/Chicago, got {shown!r:.80}",
                              argument=name)
    return value


def require_phone(name: str, value: Any) -> phonenumbers.PhoneNumber:
    """A phone number in international form (``+12125550100``, spaces and dashes allowed), parsed."""
    text = require_text(name, value, 64)
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise InvalidArgument(f"{name} must be a phone number in international form such as +12125550100, "
                              f"got {text!r:.80}", argument=name)
    return number


def e164(number: phonenumbers.PhoneNumber) -> str:
    """The number in E.164 (``+12125550100``)."""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def number_zones(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """The zones phonenumbers' data places the number in (only those this worker knows; () if none)."""
    return tuple(zone for zone in phone_timezone.time_zones_for_number(number) if is_zone(zone))


def require_phones(name: str, value: Any, max_items: int) -> tuple[str, ...]:
    """A list of phone numbers (see ``require_phone``), as E.164, without repeats, in order."""
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list of phone numbers, got {_type_name(value)}", argument=name)
    if len(value) > max_items:
        raise TooLarge(f"{name} has {len(value)} items, more than {max_items}", argument=name)
    return tuple(dict.fromkeys(e164(require_phone(f"{name}[{index}]", item)) for index, item in enumerate(value)))
