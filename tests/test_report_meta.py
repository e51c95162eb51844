"""Report metadata: the categories catch the messages our checks really raise, one category each."""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path

import pytest
from allure_commons.utils import format_exception

from support.checks import durability, error_rates, latency, recovery, statuses
from support.checks.durability import Durability
from support.checks.health import HEALTHY, UNREACHABLE, wait_for_health
from support.checks.records import check_status
from support.checks.verdict import CheckFailed
from support.core.ports import free_port
from support.evidence import report_meta
from support.evidence.report_meta import (
    CATEGORIES,
    RECOVERY_TOO_SLOW,
    SERVICE_HUNG,
    STACK_FAILED,
    SUITE_ERROR,
    WRITE_LOST,
    WRONG_STATUS,
    categorize,
    environment_properties,
    executor_info,
    format_properties,
    prepare_results_dir,
    results_dir,
    scenario_labels,
)
from support.load.history import FAIL, INFO, OK, Request
from support.stack.services import ServiceError

T0 = 100.0
PRODUCT_CATEGORIES = {RECOVERY_TOO_SLOW, WRITE_LOST, SERVICE_HUNG, WRONG_STATUS, STACK_FAILED, SUITE_ERROR}


def req(
    t: float, outcome: str = OK, status: int | None = None, error: str = "", latency: float = 0.01, key: str = ""
) -> Request:
    start = T0 + t
    status = status if status is not None or error else {OK: 201, FAIL: 409, INFO: 503}[outcome]
    return Request("write", key or f"k{t:g}", start, start, start + latency, status, error, outcome, f"n\tk{t:g}")


def raised(call, *args, **kwargs) -> tuple[str, str, str]:
    """(allure status, message, trace) as allure-behave records the exception ``call`` raises."""
    try:
        call(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - we record whatever it was, as allure-behave does
        status = "failed" if isinstance(error, AssertionError) else "broken"
        return status, format_exception(type(error), error), "".join(traceback.format_tb(error.__traceback__))
    raise AssertionError(f"{call.__name__} raised nothing")


def check_healthy(url: str) -> None:
    """Named like ScenarioState.check_healthy, the setup step's frame."""
    wait_for_health(url, HEALTHY, 0.1)


def step_health_healthy(url: str) -> None:
    """Named like the Then step that waits for health after a fault."""
    wait_for_health(url, HEALTHY, 0.1)


def _slow_recovery() -> None:
    history = (
        [req(t / 10) for t in range(40)]
        + [req(4 + t / 10, INFO) for t in range(30)]
        + [req(7 + t / 10) for t in range(30)]
    )
    recovery.check_recovered_within(recovery.recovery(history, T0 + 4, since=T0 + 4), 1.0)


def _never_recovered() -> None:
    history = [req(t / 10) for t in range(40)] + [req(4 + t / 10, INFO) for t in range(30)]
    recovery.check_recovered_within(recovery.recovery(history, T0 + 4, since=T0 + 4), 10.0)


def _never_healed() -> None:
    history = [req(t / 10) for t in range(40)]
    recovery.check_recovered_within(recovery.recovery(history, None, since=T0 + 2), 10.0)


def _raise(error: BaseException) -> None:
    raise error


def cases() -> list[tuple[str, tuple, str]]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: health answers nothing, fast
    many = [req(t / 10, INFO) for t in range(10)] + [req(1 + t / 10) for t in range(10)]
    return [
        ("recovered too late", (_slow_recovery,), RECOVERY_TOO_SLOW),
        ("never recovered", (_never_recovered,), RECOVERY_TOO_SLOW),
        ("error rate", (error_rates.check_error_rate_below, many, 20), RECOVERY_TOO_SLOW),
        ("health after a fault", (step_health_healthy, dead), RECOVERY_TOO_SLOW),
        ("failures after healing", (statuses.check_no_failures_after, many, T0 + 0.5, "the heal"), RECOVERY_TOO_SLOW),
        ("lost write", (durability.check_no_lost_writes, Durability(acknowledged=5, lost=["a"])), WRITE_LOST),
        ("changed write", (durability.check_no_lost_writes, Durability(acknowledged=5, changed=["a"])), WRITE_LOST),
        (
            "refused write stored",
            (durability.check_no_lost_writes, Durability(acknowledged=5, fail_present=["a"])),
            WRITE_LOST,
        ),
        # these need a database or a running API to be raised for real; the texts are support/checks/records.py's
        (
            "records lost",
            (
                _raise,
                CheckFailed("1 problem(s) with 3 records that should have survived: k1: missing from the database"),
            ),
            WRITE_LOST,
        ),
        (
            "refused write left a row",
            (_raise, CheckFailed("the database holds 4 records, expected 3: a failed write left a row")),
            WRITE_LOST,
        ),
        ("rows lost", (_raise, CheckFailed("the database holds 2 records, expected 3: rows were lost")), WRITE_LOST),
        (
            "wrong content",
            (_raise, CheckFailed("the first request after the fault served wrong content: {}")),
            WRITE_LOST,
        ),
        (
            "first request 503",
            (
                _raise,
                CheckFailed(
                    'the first request after the fault was answered 503, not 200: {"detail": "database unavailable"}'
                ),
            ),
            RECOVERY_TOO_SLOW,
        ),
        (
            "first request unanswered",
            (_raise, CheckFailed("the first request after the fault got no answer: ConnectError: refused")),
            RECOVERY_TOO_SLOW,
        ),
        ("seeding failed", (_raise, CheckFailed("could not create record 1 of 3: 500 oops")), STACK_FAILED),
        (
            "no records",
            (_raise, CheckFailed("no records exist to read: add a 'Given N users exist' step")),
            SUITE_ERROR,
        ),
        ("slow request", (latency.check_no_request_slower_than, [req(0, latency=5.0)], 3), SERVICE_HUNG),
        (
            "timed out",
            (latency.check_no_request_slower_than, [req(0, INFO, error="timeout", latency=1)], 3),
            SERVICE_HUNG,
        ),
        ("500 not 503", (statuses.check_failures_are_503, [req(0, INFO, status=500)]), WRONG_STATUS),
        (
            "no answer not 503",
            (statuses.check_failures_are_503, [req(0, FAIL, error="connection refused")]),
            WRONG_STATUS,
        ),
        ("duplicate not 409", (check_status, "ConnectError: refused", 409, "the write"), WRONG_STATUS),
        ("health lies", (wait_for_health, dead, UNREACHABLE, 0.1), WRONG_STATUS),
        ("unhealthy at setup", (check_healthy, dead), STACK_FAILED),
        (
            "baseline",
            (
                _raise,
                CheckFailed("the API served none of the load's 50 requests in its 1 s baseline, before any fault"),
            ),
            STACK_FAILED,
        ),
        (
            "service error",
            (_raise, ServiceError("postgres did not become ready within 30 s; see its log")),
            STACK_FAILED,
        ),
        ("no load", (error_rates.check_error_rate_below, [], 5), SUITE_ERROR),
        ("never healed", (_never_healed,), SUITE_ERROR),
        ("a bug in the suite", (_raise, KeyError("x")), SUITE_ERROR),
    ]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_each_failure_falls_into_exactly_its_category(case) -> None:
    _, (call, *args), expected = case
    status, message, trace = raised(call, *args)
    assert categorize(status, message, trace) == [expected], message


def test_a_passed_result_and_an_unknown_failure_fall_into_none() -> None:
    assert categorize("passed", None, None) == []
    assert categorize("failed", "AssertionError: something else entirely\n", "") == []


def test_categories_json_is_the_products_categories_and_valid_regexes() -> None:
    data = json.loads(json.dumps(CATEGORIES))
    assert {c["name"] for c in data} == PRODUCT_CATEGORIES
    for rule in data:
        assert set(rule) <= {"name", "description", "matchedStatuses", "messageRegex", "traceRegex"}
        for key in ("messageRegex", "traceRegex"):
            if key in rule:
                re.compile(rule[key])


# -- environment, executor, results folder, labels -------------------------------------------


def test_environment_names_what_ran() -> None:
    props = environment_properties({"postgres": "PostgreSQL 15.8", "python": "3.11.2"}, "process")
    assert props["PostgreSQL"] == "PostgreSQL 15.8"
    assert props["Python"] == "3.11.2"
    assert props["Backend"] == "process"
    assert props["API"].startswith("users-api")
    assert "behave" in props


def test_properties_are_escaped_as_java_reads_them() -> None:
    text = format_properties({"Docker engine": "24.0 = ok", "note": " two\nlines: é"})
    assert text == "Docker\\ engine=24.0 = ok\nnote=\\ two\\nlines: \\u00e9\n"
    text.encode("ascii")


def test_executor_is_local_or_the_ci_system() -> None:
    local = executor_info({}, now=1_700_000_000)
    assert local["type"] == "local" and local["buildOrder"] == 1_700_000_000
    github = executor_info(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_RUN_ID": "9",
            "GITHUB_RUN_NUMBER": "12",
            "GITHUB_WORKFLOW": "ci",
        },
        now=1,
    )
    assert github["type"] == "github"
    assert github["buildUrl"] == "https://github.com/o/r/actions/runs/9"
    assert (github["buildName"], github["buildOrder"]) == ("ci #12", 12)


def test_results_dir_is_the_allure_formatters_outfile(tmp_path) -> None:
    assert results_dir(["pretty", "allure_behave.formatter:AllureFormatter", "plain"], ["-", "out/a"]) == type(
        tmp_path
    )("out/a")
    assert results_dir(["pretty"], ["-"]) is None


def test_results_dir_is_the_last_allure_formatters_when_the_command_line_adds_one() -> None:
    allure = "allure_behave.formatter:AllureFormatter"
    assert results_dir([allure, allure], ["reports/allure-results", "/tmp/given"]) == Path("/tmp/given")
    assert results_dir([allure, allure], ["reports/allure-results"]) == Path("reports/allure-results")


class _Opener:
    def __init__(self, name):
        self.name = name


class AllureFormatter:  # shaped like allure-behave's: its name is what one_allure_formatter looks for
    def __init__(self, name):
        self.stream_opener = _Opener(name)
        self.closed = False

    def close(self):
        self.closed = True


class PrettyFormatter(AllureFormatter):
    pass


def test_one_allure_formatter_is_kept_the_last_one_with_a_folder_and_the_others_are_closed() -> None:
    pretty, ini, cli = PrettyFormatter(None), AllureFormatter("reports/allure-results"), AllureFormatter("/tmp/given")
    assert report_meta.one_allure_formatter([ini, pretty, cli]) == [pretty, cli]
    assert ini.closed and not cli.closed and not pretty.closed
    stdout = AllureFormatter(None)  # -f allure without -o: no folder, the listed one stays
    assert report_meta.one_allure_formatter([ini, stdout]) == [ini]
    assert report_meta.one_allure_formatter([pretty, ini]) == [pretty, ini]


def test_prepare_junit_dir_removes_earlier_runs_xml(tmp_path) -> None:
    (tmp_path / "TESTS-old.xml").write_text("<testsuite/>")
    (tmp_path / "notes.txt").write_text("x")
    assert report_meta.prepare_junit_dir(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert report_meta.prepare_junit_dir(None) == 0
    assert report_meta.prepare_junit_dir(tmp_path / "missing") == 0


def test_prepare_results_dir_removes_old_results_but_keeps_history(tmp_path) -> None:
    for name in (
        "a-result.json",
        "b-container.json",
        "c-attachment.png",
        "categories.json",
        "summary.json",
        "keep.txt",
    ):
        (tmp_path / name).write_text("x")
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "history.json").write_text("{}")
    assert prepare_results_dir(tmp_path) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history", "keep.txt"]
    assert (tmp_path / "history" / "history.json").exists()


def test_write_metadata_writes_the_three_files(tmp_path) -> None:
    report_meta.write_metadata(tmp_path, {"postgres": "15"}, "process")
    assert "PostgreSQL=15" in (tmp_path / "environment.properties").read_text()
    assert json.loads((tmp_path / "categories.json").read_text()) == CATEGORIES
    assert json.loads((tmp_path / "executor.json").read_text())["name"]


def test_labels_come_from_the_feature_folder_and_severity_tags() -> None:
    labels = scenario_labels(
        "features/database/postgres_restart.feature", "Postgres restarts", ["chaos", "database", "severity.critical"]
    )
    assert labels == [
        ("epic", "Database"),
        ("parentSuite", "Database"),
        ("suite", "Postgres restarts"),
        ("severity", "critical"),
    ]
    assert scenario_labels("x.feature", "", ["severity:minor", "severity.bogus"]) == [("severity", "minor")]


def test_python_is_the_running_one() -> None:
    assert environment_properties({}, "process")["Python"] == ".".join(map(str, sys.version_info[:3]))
