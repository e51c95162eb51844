"""The suite's own sensitivity: each broken variant of the reference API (tests/broken_apis/) fails
the scenario that guards the protection it lacks, with a message naming that protection, and the
reference API passes the same scenarios.

Every variant is run through its bring-your-own-service stack file, as a user would run their own
service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from suite_runner import BROKEN, REPO, leftovers, run_behave

STARTED_WHILE_DOWN = "An API started while Postgres is down answers 503 until it is back"
FROZEN_PAST_DEADLINE = "A Postgres frozen for longer than the request timeout gives 503s, never a hang"


@dataclass(frozen=True)
class Variant:
    """A broken variant, the scenario that must catch it, and what its failure must say."""

    name: str  # tests/broken_apis/<name>.toml
    scenario: str
    message: str  # a regular expression the output must match

    def __str__(self) -> str:
        return self.name


VARIANTS = [
    Variant(
        "no_pre_ping",
        "The first request after a Postgres restart succeeds",
        r"the first request after the fault was answered 503, not 200",
    ),
    Variant(
        "committing_session",
        "A refused write leaves no partial row",
        r"problem\(s\) with 3 records that should have survived: .*API serves .*\"name\":\"duplicate\""
        r".*changed in the database",
    ),
    Variant(
        "health_always_ok",
        "Health tells the truth while Postgres is stopped",
        r"the health endpoint did not report the database as unreachable within 2 s; last answer: 200",
    ),
    Variant("unbounded_pool_wait", FROZEN_PAST_DEADLINE, r"\d+ requests? took longer than 4 s \(\d+ timed out\)"),
    Variant(
        "status_500",
        "Pool exhaustion answers 503 fast and the API serves normally afterwards",
        r"\d+ failed requests? not answered with 503: \d+ with another status \(500 x\d+",
    ),
    Variant(
        "crash_at_start",
        STARTED_WHILE_DOWN,
        r"the health endpoint did not report the database as unreachable within 5 s; "
        r"last answer: no answer \(ConnectError",
    ),
    Variant("write_behind", "The API rides out a Postgres crash under heavy load", r"\d+ acknowledged writes? lost: "),
]


def name_filters(scenarios: list[str]) -> list[str]:
    return [arg for name in scenarios for arg in ("-n", f"^{re.escape(name)}$")]


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_guarding_scenario_fails_against_the_broken_variant(tmp_path, variant):
    run = run_behave(
        tmp_path / "work", "-D", f"stack_file={BROKEN / f'{variant.name}.toml'}", *name_filters([variant.scenario])
    )
    assert run.returncode != 0, run.output[-4000:]
    assert re.search(variant.message, run.output), run.output[-4000:]
    assert leftovers(run) == []


def test_the_reference_api_passes_the_same_scenarios(tmp_path):
    scenarios = list(dict.fromkeys(v.scenario for v in VARIANTS))
    run = run_behave(tmp_path / "work", "-D", f"stack_file={REPO / 'stack' / 'stack.toml'}", *name_filters(scenarios))
    assert run.returncode == 0, run.output[-6000:]
    # every name matched a scenario: a renamed scenario would otherwise pass by running nothing
    assert f"\n{len(scenarios)} scenarios passed, 0 failed" in run.output, run.output[-3000:]
    assert leftovers(run) == []
