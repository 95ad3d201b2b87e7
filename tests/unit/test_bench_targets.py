"""A benchmark figure passes its target only when it was measured: the arithmetic under every PASS/FAIL."""

from __future__ import annotations

import json
import math

import pytest

from bench.harness.targets import Target, json_safe, latency_summary, median, percentile, ratio


def test_no_data_gives_no_figure() -> None:
    assert math.isnan(percentile([], 0.99))
    assert math.isnan(median([]))
    assert all(math.isnan(value) for value in latency_summary([]).values())


def test_a_zero_or_non_finite_side_gives_no_ratio_instead_of_infinity() -> None:
    assert math.isnan(ratio(120.0, 0.0))
    assert math.isnan(ratio(0.0, 0.0))
    assert math.isnan(ratio(math.inf, 2.0))
    assert math.isnan(ratio(2.0, math.nan))
    assert ratio(3.0, 2.0) == 1.5


def test_a_median_over_a_round_without_data_is_no_figure() -> None:
    assert math.isnan(median([1.0, math.nan, 3.0]))
    assert math.isnan(median([1.0, math.inf]))
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


@pytest.mark.parametrize("measured, reason", [
    (math.inf, "infinite"),
    (math.nan, "no figure"),
    (ratio(40.0, 0.0), "no figure"),  # a claim path handing out nobody: x / 0
])
def test_an_at_least_target_fails_a_figure_that_is_not_a_number(measured: float, reason: str) -> None:
    goal = Target("engine, 8 clients vs seed-style query", measured, 10.0)
    assert not goal.passed
    assert reason in goal.reason
    line = goal.line()
    assert line.startswith("  [FAIL]") and reason in line
    assert goal.to_json()["measured"] is None and goal.to_json()["passed"] is False


@pytest.mark.parametrize("at_least, measured", [(True, 2.0), (False, 0.0)])
def test_a_target_without_samples_fails_whatever_its_value(at_least: bool, measured: float) -> None:
    goal = Target("open loop p99 vs no-op pair", measured, 1.5, at_least=at_least, samples=0)
    assert not goal.passed
    assert "no samples" in goal.line() and "[FAIL]" in goal.line()


def test_a_target_with_a_problem_fails_and_says_why() -> None:
    goal = Target("primary killed: longest press", 0.0, 13.0, at_least=False, unit="s", samples=40,
                  problem="the callers had finished before the fault ended")
    assert not goal.passed
    assert "the callers had finished" in goal.line()


@pytest.mark.parametrize("at_least, measured, passed", [
    (True, 10.0, True), (True, 9.99, False), (False, 1.5, True), (False, 1.51, False)])
def test_a_measured_figure_is_judged_by_its_bound(at_least: bool, measured: float, passed: bool) -> None:
    goal = Target("ratio", measured, 10.0 if at_least else 1.5, at_least=at_least, samples=5)
    assert goal.reason is None
    assert goal.passed is passed
    assert goal.line().startswith(f"  [{'PASS' if passed else 'FAIL'}]")


def test_json_has_no_nan_or_infinity() -> None:
    document = json_safe({"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf, "e": "x"}})
    assert document == {"a": None, "b": [1.0, None], "c": {"d": None, "e": "x"}}
    json.dumps(document, allow_nan=False)
