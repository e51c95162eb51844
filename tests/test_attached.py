"""An attached stack: the suite loads and judges a stack it did not start, and refuses what is unsafe."""

import os
import re
import signal
import uuid
from pathlib import Path

import psycopg2
import pytest
from suite_runner import leftovers, project_with, run_behave, start_behave

from support.core.config import Settings
from support.core.waiting import wait_until
from support.run.suite import start_suite

FEATURE = """Feature: attached
  Scenario: A lock on an attached stack is judged like any other
    Given the stack is healthy
    And a steady load of 30 requests per second
    When the users table is locked for 1 second
    Then the API recovers within 3 seconds
    And no acknowledged write is lost

  Scenario: A process fault on an attached stack is refused
    Given the stack is healthy
    When postgres restarts
"""


@pytest.fixture(scope="module")
def other_stack():
    """A stack started by 'someone else': this test, through the process backend."""
    suite = start_suite(Settings(work_root="/tmp/chaos-suite-tests"))
    yield suite.stack
    suite.close()


def url_of(dsn: str) -> str:
    fields = dict(re.findall(r"(\w+)=(\S+)", dsn))
    return f"postgresql://{fields['user']}:{fields['password']}@{fields['host']}:{fields['port']}/{fields['dbname']}"


def test_the_suite_judges_an_attached_stack_and_refuses_to_restart_what_it_did_not_start(tmp_path, other_stack):
    project = project_with(tmp_path, "attached.feature", FEATURE)
    run = run_behave(
        tmp_path / "work",
        "-D",
        "backend=attached",
        "-D",
        f"attached_api_url={other_stack.api_url}",
        "-D",
        f"attached_database_url={url_of(other_stack.admin_dsn)}",
        cwd=project,
    )
    assert "1 scenario passed, 0 failed, 1 error" in run.output, run.output[-4000:]
    assert "cannot restart postgres: the suite did not start it (attached stack)" in run.output
    assert other_stack.service("postgres").pid is not None  # untouched
    # the attached stack's ports stay open, of course: only processes of the run count here
    assert [found for found in leftovers(run) if found.startswith("process")] == []


def test_a_target_off_loopback_is_refused_before_any_traffic(tmp_path):
    run = run_behave(
        tmp_path / "work",
        "-D",
        "backend=attached",
        "-D",
        "attached_api_url=http://10.1.2.3:8000",
        "-D",
        "attached_database_url=postgresql://u:p@10.1.2.3:5432/db",
        "--tags=@chaos",
    )
    assert run.returncode == 2
    assert (
        "chaos-suite: refusing to inject faults into the API at 10.1.2.3: it is not on 127.0.0.1 and the suite "
        "did not start it; if you own that stack and mean it, set allow_remote_targets=true"
    ) in run.output


LONG_ATTACHED_FAULTS = """Feature: faults left open
  Scenario: no slot and read-only for a minute
    Given the stack is healthy
    And postgres has no connection slot left
    When the database is read-only for 60 seconds
"""

HEALTHY = """Feature: the next run
  Scenario: healthy
    Given the stack is healthy
"""


def _scalar(dsn: str, query: str):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_faults_a_killed_run_left_in_an_attached_database_are_healed_by_the_next_run(tmp_path, other_stack):
    work_root = Path("/tmp/chaos-suite-tests") / f"residues-{uuid.uuid4().hex[:8]}"
    work_root.mkdir(parents=True)
    attach = [
        "-D",
        "backend=attached",
        "-D",
        f"attached_api_url={other_stack.api_url}",
        "-D",
        f"attached_database_url={url_of(other_stack.admin_dsn)}",
        "-D",
        "attached_reset=true",
    ]
    dsn = other_stack.admin_dsn
    killed = start_behave(project_with(tmp_path / "a", "long.feature", LONG_ATTACHED_FAULTS), work_root, *attach)
    try:
        wait_until(
            lambda: killed.poll() is not None or _scalar(dsn, "SHOW default_transaction_read_only") == "on",
            60,
            "the attached database turning read-only",
        )
        assert killed.poll() is None, (work_root / "behave.out").read_text()[-3000:]
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)  # no heal can run
        killed.wait()
    assert _scalar(dsn, "SELECT count(*) FROM pg_roles WHERE rolname = 'chaos_suite_slots'") == 1
    assert _scalar(dsn, "SHOW default_transaction_read_only") == "on"  # what a killed run leaves

    next_run = start_behave(project_with(tmp_path / "b", "next.feature", HEALTHY), work_root, *attach)
    next_run.wait(timeout=300)
    output = (work_root / "behave.out").read_text()
    assert next_run.returncode == 0, output[-3000:]
    assert "chaos-suite: reset the server-wide read-only default in 127.0.0.1:" in output
    assert "chaos-suite: dropped role chaos_suite_slots in 127.0.0.1:" in output
    assert _scalar(dsn, "SHOW default_transaction_read_only") == "off"
    assert _scalar(dsn, "SELECT count(*) FROM pg_roles WHERE rolname = 'chaos_suite_slots'") == 0
    assert list((work_root / "residues").glob("*.json")) == []  # healed, so forgotten
