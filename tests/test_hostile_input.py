"""Hostile input under load: the malformed share's bodies, its record in the history, the checkers, and the
scenario passing against the reference API and failing against a variant that answers 500 to bad bodies."""

from __future__ import annotations

import json
import random

import pytest
from suite_runner import BROKEN, leftovers, run_behave

from support.checks import hostile_input
from support.checks.verdict import CheckFailed
from support.load.history import FAIL, INFO, OK, Request
from support.load.malformed import KINDS, MALFORMED, OVERSIZED_BYTES, MalformedShare
from support.load.spec import LoadSpec, LoadSpecError
from support.stack.workload import Workload

FEATURE = "features/load/hostile_input.feature"


def request(op, key, start, latency, status, outcome):
    return Request(op, key, start, start, start + latency, status, "", outcome)


def test_the_malformed_bodies_are_malformed_each_its_own_way():
    share = MalformedShare(0.5, 1.0, Workload(), "", "run1", random.Random(1))
    with pytest.raises(ValueError):
        json.loads(share.bodies["bad_json"])
    wrong = json.loads(share.bodies["wrong_types"])
    assert set(wrong) == {"name", "email"} and all(isinstance(v, list) for v in wrong.values())
    assert len(share.bodies["oversized"]) >= OVERSIZED_BYTES * 0.99
    assert share.method == "POST" and share.path == "/users"
    assert share.draw(0.5) is None  # nothing malformed before ``after``
    drawn = [share.draw(2.0) for _ in range(400)]
    kinds = [k for k in drawn if k]
    assert 140 <= len(kinds) <= 260  # binomial(400, 0.5): the bounds are 6 sd away
    assert kinds[:4] == list(KINDS)  # the forms in turn


def test_a_malformed_share_of_all_or_less_than_none_is_refused():
    with pytest.raises(LoadSpecError, match="malformed_share=1.0 must be a share from 0 up to"):
        LoadSpec("http://127.0.0.1:1", malformed_share=1.0)
    with pytest.raises(LoadSpecError, match="malformed_after=-1"):
        LoadSpec("http://127.0.0.1:1", malformed_after=-1)


HISTORY = [request("write", f"k{i}", i * 0.1, 0.01, 201, OK) for i in range(20)] + [
    request(MALFORMED, "bad_json", 2.05, 0.01, 422, FAIL),
    request(MALFORMED, "oversized", 2.15, 0.05, 413, FAIL),
]
HISTORY += [request("read", f"k{i}", 2.0 + i * 0.1, 0.012, 200, OK) for i in range(20)]


def test_refused_malformed_requests_pass_and_a_500_fails_naming_the_property():
    hostile_input.check_malformed_refused(HISTORY)
    broken = HISTORY + [request(MALFORMED, "wrong_types", 3.0, 0.01, 500, INFO)]
    with pytest.raises(CheckFailed, match=r"malformed input must be refused with a 4xx, never a 5xx: 1 of 3 .*"
                       r"wrong_types -> 500 x1"):  # fmt: skip
        hostile_input.check_malformed_refused(broken)
    with pytest.raises(CheckFailed, match="no malformed request was sent"):
        hostile_input.check_malformed_refused(HISTORY[:20])


def test_the_well_formed_share_is_judged_on_its_own():
    hostile_input.check_well_formed_error_rate_below(HISTORY, 1)  # the 4xx of the malformed share do not count
    hurt = HISTORY + [request("write", "x", 2.5, 0.01, 503, INFO)]
    with pytest.raises(CheckFailed, match=r"well-formed requests must keep their error rate .*5\.0% of 20 well-formed"):
        hostile_input.check_well_formed_error_rate_below(hurt, 1)
    hostile_input.check_well_formed_latency_kept(HISTORY)
    slow = HISTORY + [request("read", "y", 2.6, 0.5, 200, OK)]
    with pytest.raises(CheckFailed, match=r"keep their latency .*p99 500 ms .* against 12 ms before"):
        hostile_input.check_well_formed_latency_kept(slow)


def test_the_reference_api_refuses_every_malformed_request_and_serves_the_rest(tmp_path):
    run = run_behave(tmp_path / "work", FEATURE)
    assert run.returncode == 0, run.output[-6000:]
    assert "\n1 scenario passed, 0 failed" in run.output, run.output[-3000:]
    history = (run.run_dirs[0] / "scenario-001").glob("load-*.csv")
    rows = [line.split(",") for path in history for line in path.read_text().splitlines()[1:]]
    seen = {(row[1], row[5]) for row in rows if row[0] == MALFORMED}
    assert {kind for kind, _ in seen} == set(KINDS), seen
    assert all(status.startswith("4") for _, status in seen), seen
    assert leftovers(run) == []


def test_an_api_that_answers_500_to_bad_bodies_fails_with_the_property_named(tmp_path):
    run = run_behave(tmp_path / "work", FEATURE, "-D", f"stack_file={BROKEN / 'malformed_500.toml'}")
    assert run.returncode == 1, run.output[-4000:]
    assert "malformed input must be refused with a 4xx, never a 5xx:" in run.output, run.output[-4000:]
    assert "bad_json -> 500" in run.output
    assert leftovers(run) == []
