"""The end of a run: integrity, targets and observations printed; one JSON document and one PNG chart."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from bench.harness.core import Outcome, Panel, RunOptions, Say
from bench.harness.integrity import combine
from bench.harness.targets import Target, json_safe

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
COLUMNS = 3


def print_summary(outcomes: Sequence[Outcome], say: Say) -> list[Target]:
    """The integrity lines, the targets with PASS/FAIL (a stopped part fails), the observations."""
    reports = [report for outcome in outcomes for report in outcome.checks]
    say("\nNever handed to two assistants:")
    for report in reports:
        say(report.line())
    total = combine("all parts", reports)
    verdict = "nothing checked" if not total.answers else "PASS" if all(report.ok for report in reports) else "FAIL"
    say(f"  => {total.answers} claims checked, {total.handed_twice} students handed to two assistants [{verdict}]")
    say("\nTargets (same run, same machine):")
    goals = [goal for outcome in outcomes for goal in outcome.targets()]
    for goal in goals:
        say(goal.line())
    for outcome in outcomes:
        if outcome.error:
            say(f"  [FAIL] part {outcome.part.name} stopped before its targets: {outcome.error}")
    say("\nFor reference (no target):")
    for name, value in [line for outcome in outcomes for line in outcome.observations()]:
        say(f"  {name}: {value:.2f}x")
    return goals


def document(outcomes: Sequence[Outcome], options: RunOptions, load: dict[str, list[float]]) -> dict[str, Any]:
    """The whole run: per part its config, results (every window, round and repeat), targets and seconds."""
    parts = {outcome.part.name.replace("-", "_"): {
        "config": dataclasses.asdict(outcome.config), "error": outcome.error,
        "results": None if outcome.results is None else outcome.results.to_json(),
        "targets": [goal.to_json() for goal in outcome.targets()],
        "observations": {name: round(value, 3) for name, value in outcome.observations()},
    } for outcome in outcomes}
    return json_safe({
        "meta": _meta(load), "options": dataclasses.asdict(options), **parts,
        "integrity": [report.to_json() for outcome in outcomes for report in outcome.checks],
        "targets": [goal.to_json() for outcome in outcomes for goal in outcome.targets()],
        "part_seconds": {outcome.part.name.replace("-", "_"): outcome.seconds for outcome in outcomes},
    })


def _meta(load: dict[str, list[float]]) -> dict[str, Any]:
    import celery
    import pymongo
    return {"finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git": git_state(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "celery": celery.__version__, "pymongo": pymongo.version, "load_average_1m": load}


def git_state() -> dict[str, Any]:
    """The commit measured, and which files under test differed from it (the tree may be shared)."""
    root = Path(__file__).resolve().parent.parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "workers", "config", "producers", "devstack").splitlines()
    return {"head": git("rev-parse", "HEAD").strip(), "uncommitted": [line[3:] for line in changed]}


def write_files(outcomes: Sequence[Outcome], document_: dict[str, Any],
                directory: Path = RESULTS_DIR) -> tuple[Path, Path | None]:
    """``bench-<time>.json``, and ``bench-<time>.png`` when some part drew a panel."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    json_path, png_path = directory / f"bench-{stamp}.json", directory / f"bench-{stamp}.png"
    json_path.write_text(json.dumps(document_, indent=2, default=lambda moment: moment.isoformat()) + "\n")
    panels = [panel for outcome in outcomes if outcome.results is not None
              for panel in outcome.part.panels(outcome.results)]
    if not panels:
        return json_path, None
    draw_chart(panels, png_path)
    return json_path, png_path


def bars(title: str, ylabel: str, labels: Sequence[str], heights: Sequence[float],
         dots: Sequence[Sequence[float]] = ()) -> Panel:
    """A chart panel: one labelled bar per label, with dots over each (every round's figure, say)."""
    def draw(axes: Any) -> None:
        axes.bar_label(axes.bar(labels, heights, color="tab:blue"), fmt="%.0f", fontsize=8)
        for position, points in enumerate(dots):
            axes.plot([position] * len(points), points, "k.", alpha=0.6)
        axes.set(ylabel=ylabel, title=title)

    return draw


def draw_chart(panels: list[Panel], path: Path) -> None:
    """The parts' panels in rows of three."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(panels) / COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(18, 5 * rows), squeeze=False)
    for index, cell in enumerate(axes.flat):
        if index < len(panels):
            panels[index](cell)
        else:
            cell.set_visible(False)
    figure.suptitle(f"callqueue benchmark ({os.cpu_count()} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
