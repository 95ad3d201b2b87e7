"""Argument checks: every value that reaches a query is a plain, bounded string or integer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.exceptions import InvalidArgument, TooLarge
from workers.validation import require_document, require_id, require_list, require_token

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("value", [{"$ne": None}, {"$gt": ""}, ["a"], 7, None, True, 1.5])
def test_ids_that_are_not_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        require_id("assistant_id", value, 128)


@pytest.mark.parametrize("value", ["", "   ", "$where", "a\nb", "x\x00"])
def test_empty_operator_like_or_control_character_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        require_id("assistant_id", value, 128)


def test_overlong_ids_are_too_large() -> None:
    with pytest.raises(TooLarge):
        require_id("assistant_id", "a" * 129, 128)
    assert require_id("assistant_id", "a" * 128, 128) == "a" * 128


def test_ids_with_dots_or_inner_dollars_are_plain_values() -> None:
    assert require_id("assistant_id", "ann.lee@example.org", 128) == "ann.lee@example.org"
    assert require_id("student_id", "s$1", 128) == "s$1"


@pytest.mark.parametrize("value", [True, 0, -3, "1", 1.0, None, 2**62])
def test_tokens_must_be_positive_integers(value: object) -> None:
    with pytest.raises(InvalidArgument):
        require_token("assignment_token", value)


@pytest.mark.parametrize("value", [{"$set": 1}, {"a.b": 1}, {"": 1}, {"a": {"$gt": 1}}])
def test_documents_with_operator_or_dotted_keys_are_refused(value: dict) -> None:
    with pytest.raises(InvalidArgument, match="unusable key"):
        require_document("student", value, 10_000)


def test_deeply_nested_and_oversized_documents_are_refused() -> None:
    nested: dict = {}
    inner = nested
    for _ in range(20):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidArgument, match="nested"):
        require_document("student", nested, 10_000)
    with pytest.raises(TooLarge):
        require_document("student", {"note": "x" * 2000}, 1000)


def test_lists_are_bounded() -> None:
    with pytest.raises(TooLarge):
        require_list("students", [{}] * 11, 10)
    with pytest.raises(InvalidArgument):
        require_list("students", [], 10)


@given(JSON)
def test_any_json_value_is_accepted_as_an_id_only_if_it_is_a_usable_string(value: object) -> None:
    try:
        accepted = require_id("call_session_id", value, 128)
    except InvalidArgument:
        return
    assert isinstance(accepted, str) and accepted.strip() and not accepted.startswith("$")
