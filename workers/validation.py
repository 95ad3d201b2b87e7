"""Checks on task arguments, run before anything touches MongoDB.

Every value that reaches a query is a plain, bounded string or integer, so a
caller can never smuggle a MongoDB operator (``{"$ne": null}``) into a filter.
Each check raises a ``Rejected`` subclass that names the argument.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from workers.exceptions import InvalidArgument, Rejected, TooLarge
from workers.models import Callback, RetryRule

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
