"""Running a scenario N times on the same stack: ``-D repeat=N`` for every scenario, ``@repeat.N`` for one.

Before the first feature runs, each repeated scenario is replaced in its feature (or rule) by N
copies named "NAME (run i of N)", so behave, its formatters, the JUnit report and the hooks each see
N ordinary scenarios: every run gets the per-scenario isolation (support/run/isolation.py), its own
faults, heals and evidence. The copies share one :class:`support.checks.repeats.RepeatGroup` that
gathers their outcomes. Works on behave's model objects by their attributes (support/ never imports
behave); Scenario Outlines are not repeated (their examples already are several runs).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from support.checks.repeats import RepeatGroup
from support.core.config import SettingsError

__all__ = ["RepeatRun", "RepeatTagError", "repeat_count", "expand_repeats", "repeat_of"]

_TAG = re.compile(r"repeat\.(.*)")
_ATTRIBUTE = "chaos_repeat"


class RepeatTagError(SettingsError):
    """A ``@repeat.N`` tag whose N is not a whole number of 1 or more."""


@dataclass(frozen=True)
class RepeatRun:
    """Run ``run`` (from 1) of the group's ``group.runs``."""

    group: RepeatGroup
    run: int

    @property
    def last(self) -> bool:
        """This is the group's last run."""
        return self.run >= self.group.runs


def repeat_count(tags: Iterable[str], default: int) -> int:
    """The runs a scenario with ``tags`` gets: its ``@repeat.N`` tag, else ``default``."""
    for tag in tags:
        match = _TAG.fullmatch(str(tag))
        if match is None:
            continue
        text = match.group(1)
        if not text.isdigit() or int(text) < 1:
            raise RepeatTagError(f"@{tag}: the runs of a scenario are a whole number of 1 or more, as in @repeat.5")
        return int(text)
    return default


def _copies(scenario: Any, runs: int) -> list[Any]:
    group = RepeatGroup(scenario.name, runs)
    # the copies share their feature, rule, background and tags (behave's Tag cannot be deep-copied); each
    # gets its own steps and capture, which a run writes to
    shared = [scenario.feature, getattr(scenario, "parent", None), scenario.background, *scenario.tags]
    keep = {id(x): x for x in shared if x is not None}
    out = []
    for run in range(1, runs + 1):
        twin = copy.deepcopy(scenario, memo=dict(keep))
        twin.name = f"{scenario.name} (run {run} of {runs})"
        setattr(twin, _ATTRIBUTE, RepeatRun(group, run))
        out.append(twin)
    return out


def _expand(container: Any, default: int) -> int:
    added = 0
    items: list[Any] = []
    for item in container.run_items:
        if getattr(item, "type", "") == "rule":
            added += _expand(item, default)
            items.append(item)
            continue
        tags = [*getattr(container, "tags", []), *getattr(item, "tags", [])]
        runs = repeat_count(tags, default) if getattr(item, "type", "") == "scenario" else 1
        if runs == 1:
            items.append(item)
            continue
        twins = _copies(item, runs)
        items.extend(twins)
        added += runs - 1
    container.run_items[:] = items
    container.scenarios[:] = [i for i in items if getattr(i, "type", "") != "rule"]
    return added


def expand_repeats(features: Iterable[Any], default: int) -> int:
    """Replace each scenario to repeat by its runs, in place; the number of scenario runs added."""
    return sum(_expand(feature, default) for feature in features)


def repeat_of(scenario: Any) -> RepeatRun | None:
    """The run a scenario copy is, or None for a scenario that is not repeated."""
    return getattr(scenario, _ATTRIBUTE, None)
