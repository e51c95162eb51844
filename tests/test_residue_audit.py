"""The residue audit after every scenario (support/faults/audit.py): what it judges from the database's rows, that
it finds what each fault leaves when its heal is broken, on a real stack, removes it, finds nothing on a healthy
stack, and fails a behave scenario in one line naming the residue while the next scenario starts clean.
"""

import re
import signal
import subprocess
import sys
import time

import httpx
import psycopg2
import pytest
from suite_runner import REPO, leftovers, run_behave

from support.core.config import Settings
from support.core.waiting import wait_until
from support.faults import audit
from support.faults.admin import api_role
from support.faults.audit import Baseline, Residue, ResidueLeft, database_residues
from support.faults.concurrency import Deadlocks, RowsHeld
from support.faults.database import ReadOnlyDatabase, SlowStatements, TableLock
from support.faults.network import LinkLatency
from support.faults.slots import SlotExhaustion
from support.run.suite import start_suite

DSN = "host=127.0.0.1 port=5432 dbname=users user=postgres"

# -- judging the rows (no database) ------------------------------------------------------------------


def test_settings_and_limits_count_only_where_they_differ_from_the_baseline():
    base = Baseline(settings={"work_mem": "8MB"}, limits={"app": "-1"})
    rows = [
        ("setting", "work_mem", "8MB"),
        ("limit", "app", "-1"),
        ("setting", "default_transaction_read_only", "on"),
        ("limit", "other", "0"),  # a role made after the baseline is not judged by its limit
    ]
    assert [r.what for r in database_residues(DSN, rows, base)] == [
        "ALTER SYSTEM setting default_transaction_read_only = 'on'"
    ]
    rows = [("setting", "work_mem", "64MB"), ("limit", "app", "0")]
    assert [r.what for r in database_residues(DSN, rows, base)] == [
        "ALTER SYSTEM setting work_mem = '64MB'",
        "role app at connection limit 0 (was -1)",
    ]


def test_every_other_row_is_a_residue_named_in_words():
    rows = [
        ("session", "42", "chaos-suite-lock as postgres holding AccessExclusiveLock on users"),
        ("idle", "43", "2.5"),
        ("policy", "chaos_suite_slow", "users"),
        ("trigger", "chaos_suite_cross", "users"),
        ("function", "chaos_suite_cross", "public"),
        ("table", "chaos_suite_cross", "public"),
        ("role", "chaos_suite_slots", ""),
    ]
    assert [r.what for r in database_residues(DSN, rows, Baseline())] == [
        "session 42 of the suite (chaos-suite-lock as postgres holding AccessExclusiveLock on users)",
        "session 43 of the service idle in a transaction for 2.5 s",
        "row-security policy chaos_suite_slow on users",
        "trigger chaos_suite_cross on users",
        "function chaos_suite_cross",
        "table chaos_suite_cross",
        "role chaos_suite_slots",
    ]


def test_what_was_found_is_repaired_and_named_in_one_line():
    repaired = []

    def broken():
        raise RuntimeError("no\nway")

    found = [Residue("api is paused (SIGSTOP)", lambda: repaired.append("api")), Residue("role x", broken)]
    unrepaired = audit.heal(found)
    assert repaired == ["api"] and unrepaired == ["role x: RuntimeError: no way"]
    assert audit.describe(found, unrepaired) == (
        "left after the scenario's heals: api is paused (SIGSTOP); role x (could not remove: role x: RuntimeError: no way)"
    )
    assert audit.describe(found[:1], []) == "left after the scenario's heals: api is paused (SIGSTOP) (removed)"


def test_many_sessions_alike_are_one_line():
    rows = [("session", str(pid), "chaos-suite-slots as chaos_suite_slots") for pid in range(10, 17)]
    (one,) = database_residues(DSN, rows, Baseline())
    assert one.what == "7 sessions of the suite (chaos-suite-slots as chaos_suite_slots): pid 10, 11, 12, 13, 14, ..."


def test_the_state_of_a_process_is_read_from_proc():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert audit._process_state(child.pid) in ("S", "R")
        child.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while audit._process_state(child.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)  # the kernel stops it asynchronously
        assert audit._process_state(child.pid) == "T"
    finally:
        child.kill()
        child.wait()
    assert audit._process_state(child.pid) == ""


# -- on a real stack: each fault with its heal left out is found, named and removed ------------------------------


@pytest.fixture(scope="module")
def suite():
    suite = start_suite(Settings(work_root="/tmp/chaos-suite-tests", load_baseline=0.5))
    yield suite
    suite.close()


@pytest.fixture
def state(suite):
    state = suite.begin_scenario("a fault whose heal is left out")
    yield state
    suite.end_scenario(state)


def _found(suite):
    return [r.what for r in suite.isolation.residues.audit()]


def _injected(fault):
    fault.inject()
    return fault  # kept: a fault gone to the garbage collector would close its connection


def _rows_held(stack):
    assert httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": "held@t.test"}).status_code == 201
    fault = RowsHeld(stack.admin_dsn)
    fault.inject()
    return fault


def _slots_taken(stack):
    fault = SlotExhaustion(stack.admin_dsn, service_role=api_role(stack.app_dsn))
    fault.inject()
    return fault


def _app_idle_in_transaction(stack):
    conn = psycopg2.connect(stack.app_dsn, connect_timeout=3)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")  # psycopg2 opened a transaction; it is left open
    time.sleep(audit.IDLE_IN_TRANSACTION + 0.3)  # the age the audit waits for is the fault here
    return conn


LEFT_OUT = {
    "table lock": (
        lambda stack: _injected(TableLock(stack.admin_dsn)),
        r"^session \d+ of the suite \(chaos-suite-lock as postgres holding AccessExclusiveLock on users\)$",
    ),
    "rows held": (
        _rows_held,
        r"^session \d+ of the suite \(chaos-suite-hold as postgres holding RowShareLock on users\)$",
    ),
    "read-only": (
        lambda stack: _injected(ReadOnlyDatabase(stack.admin_dsn)),
        r"^ALTER SYSTEM setting default_transaction_read_only = 'on'$",
    ),
    "slow statements": (
        lambda stack: _injected(SlowStatements(stack.admin_dsn, 0.01)),
        r"^row-security policy chaos_suite_slow on users; function chaos_suite_delay$",
    ),
    "slots": (
        _slots_taken,
        r"^\d+ sessions of the suite \(chaos-suite-slots as chaos_suite_slots\): pid [\d, .]+; role chaos_suite_slots;"
        r" role app at connection limit 0 \(was -1\)$",
    ),
    "latency": (
        lambda stack: _injected(LinkLatency(stack.link("api", "postgres"), 100)),
        r"^the link between api and postgres: toxic latency \(chaos_latency_downstream\)$",
    ),
    "paused api": (lambda stack: stack.service("api").pause(), r"^api is paused \(SIGSTOP\)$"),
    "stopped api": (lambda stack: stack.service("api").stop(5), r"^api is not running$"),
    "idle in transaction": (
        _app_idle_in_transaction,
        r"^session \d+ of the service idle in a transaction for \d+\.\d s$",
    ),
}


@pytest.mark.parametrize("fault", LEFT_OUT, ids=str)
def test_a_fault_whose_heal_is_left_out_is_found_named_and_removed(suite, state, fault):
    assert _found(suite) == []  # a healthy stack has nothing to report
    make, expected = LEFT_OUT[fault]
    kept = make(suite.stack)  # the heal is left out on purpose
    try:
        with pytest.raises(ResidueLeft) as raised:
            suite.isolation.residues.audit_and_heal()
        line = str(raised.value)
        assert line.endswith(" (removed)"), line
        named = line.removeprefix("left after the scenario's heals: ").removesuffix(" (removed)")
        assert re.match(expected, named), line
        assert _found(suite) == []
        assert httpx.get(suite.stack.health_url, timeout=5).status_code == 200
    finally:
        if isinstance(kept, psycopg2.extensions.connection):
            kept.close()
        if isinstance(kept, SlotExhaustion):
            kept._stop.set()  # its refill thread, which the left-out heal would have stopped


def test_a_deadlock_fault_left_in_place_is_found_and_removed(suite, state):
    fault = Deadlocks(suite.stack.admin_dsn)
    fault.cycles = 1  # no load: its objects and its crossing session are what a broken heal leaves
    fault.inject()
    wait_until(
        lambda: "chaos-suite-deadlock" in " ".join(_found(suite)), 5.0, "the crossing session connected", interval=0.02
    )
    with pytest.raises(ResidueLeft) as raised:
        suite.isolation.residues.audit_and_heal()
    line = str(raised.value)
    for part in (
        "of the suite (chaos-suite-deadlock as postgres",
        "trigger chaos_suite_cross on users",
        "function chaos_suite_cross",
        "table chaos_suite_cross",
    ):
        assert part in line, line
    fault._stop.set()  # the crossing thread ends once its session is gone
    assert _found(suite) == []


def test_the_audit_costs_a_few_milliseconds_on_a_healthy_stack(suite):
    """Side by side: one audit against the blanket link heal it replaces and a trivial query (same machine, same
    moment); printed for the record, bounded loosely against the stack's own control calls."""
    residues = suite.isolation.residues
    audits, heals = [], []
    for _ in range(20):
        started = time.perf_counter()
        assert residues.audit_and_heal() == []
        audits.append(time.perf_counter() - started)
        started = time.perf_counter()
        for link in suite.stack.links.values():
            link.heal()
        heals.append(time.perf_counter() - started)
    audit_ms, heal_ms = sorted(audits)[10] * 1000, sorted(heals)[10] * 1000
    print(f"residue audit: median {audit_ms:.1f} ms; the blanket link heal it replaces: {heal_ms:.1f} ms")
    assert audit_ms < 10 * heal_ms + 50


# -- in behave: the scenario fails with the line, the next starts clean --------------------------------------------


BROKEN_HEALS = '''
"""Faults whose heal is broken on purpose, for tests/test_residue_audit.py."""
from behave import when

from support.faults.database import ReadOnlyDatabase, TableLock
from support.faults.process import ServicePause


class LockNeverReleased(TableLock):
    def heal(self):
        """Broken on purpose: the lock's session is left open."""


class ReadOnlyNeverReset(ReadOnlyDatabase):
    def heal(self):
        """Broken on purpose: the ALTER SYSTEM setting is left."""


class PauseNeverResumed(ServicePause):
    def heal(self):
        """Broken on purpose: the service is left frozen."""


@when("the users table is locked by a fault whose heal is broken")
def step_lock(context):
    context.chaos.inject(LockNeverReleased(context.chaos.stack.admin_dsn))


@when("the database is read-only by a fault whose heal is broken")
def step_read_only(context):
    context.chaos.inject(ReadOnlyNeverReset(context.chaos.stack.admin_dsn))


@when("api is paused by a fault whose heal is broken")
def step_pause(context):
    context.chaos.inject(PauseNeverResumed(context.chaos.stack.service("api")))
'''

FEATURE = """@chaos
Feature: faults whose heals are broken

  Scenario: a lock left behind
    Given the stack is healthy
    When the users table is locked by a fault whose heal is broken

  Scenario: a read-only setting left behind
    Given the stack is healthy
    When the database is read-only by a fault whose heal is broken

  Scenario: a frozen api left behind
    Given the stack is healthy
    When api is paused by a fault whose heal is broken

  Scenario: the next scenario starts clean
    Given the stack is healthy
    And 3 users exist
    Then the 3 users still exist
"""


def test_a_broken_heal_fails_its_scenario_naming_the_residue_and_the_next_starts_clean(tmp_path):
    project = tmp_path / "project"
    (project / "features").mkdir(parents=True)
    (project / "steps").mkdir()
    for step_file in (REPO / "steps").glob("*.py"):
        (project / "steps" / step_file.name).symlink_to(step_file)
    (project / "steps" / "broken_heals.py").write_text(BROKEN_HEALS)
    for name in ("environment.py", "behave.ini"):
        (project / name).symlink_to(REPO / name)
    (project / "features" / "broken_heals.feature").write_text(FEATURE)
    (project / "stack").symlink_to(REPO / "stack")
    run = run_behave(tmp_path / "work", "-D", f"stack_file={REPO / 'stack' / 'stack.toml'}", cwd=project)
    assert run.returncode != 0, run.output[-4000:]
    lines = [line for line in run.output.splitlines() if "left after the scenario's heals" in line]
    said = "\n".join(lines)
    assert re.search(
        r"ResidueLeft: left after the scenario's heals: session \d+ of the suite \(chaos-suite-lock as postgres"
        r" holding AccessExclusiveLock on users\) \(removed\)$",
        said,
        re.M,
    ), run.output[-4000:]
    assert re.search(r"ALTER SYSTEM setting default_transaction_read_only = 'on' \(removed\)$", said, re.M), said
    assert re.search(r"api is paused \(SIGSTOP\) \(removed\)$", said, re.M), said
    assert re.search(r"\b1 scenarios? passed", run.output), run.output[-3000:]
    assert "Traceback" not in run.output
    assert leftovers(run) == []
