"""Database faults on a real stack: each fault's effect seen through SQL and HTTP, and its heal.

The last tests run the feature's scenarios through behave against broken
variants of the API (tests/broken_apis/) and show each fails, naming the
property the variant lacks.
"""

import re
import threading
import time
from contextlib import closing

import httpx
import psycopg2
import pytest
from psycopg2 import errors
from suite_runner import BROKEN, leftovers, run_behave

from support.core.config import Settings
from support.core.waiting import wait_until
from support.faults.admin import HealTimeout, api_role, database_identity, run_heal
from support.faults.base import FaultHadNoEffect
from support.faults.database import ReadOnlyDatabase, SlowStatements, TableLock, TerminateBackends
from support.faults.ledger import FaultLedger, HealErrors
from support.faults.residues import heal_residue
from support.faults.slots import SlotExhaustion
from support.run.suite import start_suite

CLOSED = "host=127.0.0.1 port=1 dbname=users user=postgres password=x"  # nothing listens on port 1


@pytest.fixture(scope="module")
def suite():
    suite = start_suite(Settings(work_root="/tmp/chaos-suite-tests"))
    yield suite
    suite.close()


@pytest.fixture
def stack(suite):
    state = suite.begin_scenario("a database fault")
    yield suite.stack
    suite.end_scenario(state)


def connect(dsn, **kwargs):
    conn = psycopg2.connect(dsn, connect_timeout=3, **kwargs)
    conn.autocommit = True
    return conn


def sql(dsn, query, params=None):
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def api_pids(stack):
    return {
        pid
        for (pid,) in sql(
            stack.admin_dsn, "SELECT pid FROM pg_stat_activity WHERE usename = %s", (api_role(stack.app_dsn),)
        )
    }


def create(stack, email):
    return httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": email}, timeout=5)


def timed(cur, query, params=None):
    started = time.monotonic()
    cur.execute(query, params)
    return time.monotonic() - started


# -- terminate ---------------------------------------------------------------------------


def test_terminate_ends_every_api_session_and_the_api_reconnects(stack):
    assert create(stack, "before@t.test").status_code == 201
    # after a success the API fills its pool (5 connections) in the background
    wait_until(lambda: len(api_pids(stack)) >= 5, 5.0, "the API filling its connection pool")
    before = api_pids(stack)
    bystander = connect(stack.admin_dsn)  # a superuser session: not the API's
    fault = TerminateBackends(stack.admin_dsn, api_role(stack.app_dsn))
    fault.inject()
    assert fault.terminated == len(before) >= 1
    assert not before & api_pids(stack)
    with bystander.cursor() as cur:
        cur.execute("SELECT 1")
    bystander.close()
    assert httpx.get(f"{stack.api_url}/users/1", timeout=5).status_code == 200  # pre-ping reconnects
    assert api_pids(stack) - before
    fault.heal()
    fault.heal()


def test_terminate_with_no_session_to_end_says_so(stack):
    with pytest.raises(FaultHadNoEffect, match="no session of role nobody_here"):
        TerminateBackends(stack.admin_dsn, "nobody_here").inject()


def test_terminate_can_select_by_application_name(stack):
    api_sessions = api_pids(stack)
    other = connect(stack.app_dsn, application_name="someone-else")
    fault = TerminateBackends(stack.admin_dsn, api_role(stack.app_dsn), application_name="someone-else")
    fault.inject()
    assert fault.terminated == 1
    with pytest.raises(psycopg2.OperationalError):
        other.cursor().execute("SELECT 1")
    other.close()
    assert api_sessions <= api_pids(stack)  # the API's own sessions were left alone


# -- connection slots ---------------------------------------------------------------------


def test_slot_exhaustion_refuses_new_connections_keeps_superusers_and_heals(stack):
    assert create(stack, "warm@t.test").status_code == 201
    for _ in range(6):  # the pool hands its connections out in turn: pre-ping revives any a test terminated
        httpx.get(f"{stack.api_url}/users/1", timeout=5)
    wait_until(lambda: len(api_pids(stack)) >= 5, 5.0, "the API filling its connection pool")
    fault = SlotExhaustion(stack.admin_dsn)
    started = time.monotonic()
    fault.inject()
    took = time.monotonic() - started
    try:
        assert fault.held > 50
        assert "remaining connection slots are reserved" in fault.refused
        with pytest.raises(psycopg2.OperationalError, match="remaining connection slots are reserved"):
            connect(stack.app_dsn)
        assert sql(stack.admin_dsn, "SELECT 1") == [(1,)]  # the reserved slots are the suite's
        assert httpx.get(f"{stack.api_url}/users/1", timeout=5).status_code == 200  # on its pooled connection
        # a slot that frees up is taken back: end one of the holder's sessions
        victim = sql(stack.admin_dsn, "SELECT max(pid) FROM pg_stat_activity WHERE usename = %s", (fault.role,))[0][0]
        sql(stack.admin_dsn, "SELECT pg_terminate_backend(%s, 3000)", (victim,))
        held = fault.held
        wait_until(
            lambda: (
                sql(stack.admin_dsn, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (fault.role,))[0][0]
                == held
            ),
            3.0,
            "the freed slot being taken back",
        )
        with pytest.raises(psycopg2.OperationalError, match="remaining connection slots are reserved"):
            connect(stack.app_dsn)
    finally:
        fault.heal()
    assert took < 10
    connect(stack.app_dsn).close()
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (fault.role,)) == [(0,)]
    fault.heal()


def test_slot_exhaustion_never_gives_a_freed_slot_back_to_the_service(stack):
    role = api_role(stack.app_dsn)
    fault = SlotExhaustion(stack.admin_dsn, service_role=role)
    fault.inject()
    try:
        # free a slot and ask for it at once, before the leak's next poll: the service still gets none
        victim = sql(stack.admin_dsn, "SELECT max(pid) FROM pg_stat_activity WHERE usename = %s", (fault.role,))[0][0]
        sql(stack.admin_dsn, "SELECT pg_terminate_backend(%s, 3000)", (victim,))
        with pytest.raises(psycopg2.OperationalError, match="too many connections for role"):
            connect(stack.app_dsn)
    finally:
        fault.heal()
    assert sql(stack.admin_dsn, "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)) == [(-1,)]
    connect(stack.app_dsn).close()
    superuser = SlotExhaustion(stack.admin_dsn, service_role="postgres")  # no limit binds a superuser: left alone
    superuser.inject()
    superuser.heal()
    assert sql(stack.admin_dsn, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'postgres'") == [(-1,)]


def test_slot_exhaustion_heals_after_failing_half_way(stack):
    fault = SlotExhaustion(stack.admin_dsn, timeout=0.0)  # no time to open any connection: fails after making its role
    with pytest.raises(TimeoutError, match="still accepted connections"):
        fault.inject()
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (fault.role,)) == [(1,)]
    fault.heal()
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (fault.role,)) == [(0,)]
    unreachable = SlotExhaustion(CLOSED)
    with pytest.raises(psycopg2.OperationalError):
        unreachable.inject()
    unreachable.heal()


# -- table lock ------------------------------------------------------------------------------


def test_table_lock_blocks_statements_until_healed(stack):
    fault = TableLock(stack.admin_dsn)
    fault.inject()
    try:
        with (
            closing(connect(stack.app_dsn, options="-c lock_timeout=200")) as conn,
            conn.cursor() as cur,
            pytest.raises(errors.LockNotAvailable),
        ):
            cur.execute("SELECT count(*) FROM users")
        assert create(stack, "locked@t.test").status_code == 503
    finally:
        fault.heal()
    fault.heal()
    assert sql(stack.app_dsn, "SELECT count(*) FROM users") == [(0,)]
    assert create(stack, "unlocked@t.test").status_code == 201
    failed = TableLock(CLOSED)
    with pytest.raises(psycopg2.OperationalError):
        failed.inject()
    failed.heal()


# -- read-only ---------------------------------------------------------------------------------


def test_read_only_reaches_existing_sessions_and_heal_makes_them_writable_again(stack):
    assert create(stack, "first@t.test").status_code == 201
    existing = connect(stack.app_dsn)  # opened before the fault
    fault = ReadOnlyDatabase(stack.admin_dsn)
    try:
        fault.inject()
        with existing.cursor() as cur:
            with pytest.raises(errors.ReadOnlySqlTransaction):
                cur.execute("INSERT INTO users (name, email) VALUES ('x', 'existing@t.test')")
            cur.execute("SELECT count(*) FROM users")
            assert cur.fetchone() == (1,)
        with (
            closing(connect(stack.app_dsn)) as fresh,
            fresh.cursor() as cur,
            pytest.raises(errors.ReadOnlySqlTransaction),
        ):
            cur.execute("INSERT INTO users (name, email) VALUES ('x', 'fresh@t.test')")
        refused = create(stack, "during@t.test")
        assert refused.status_code == 503
        assert "read-only" in refused.json()["detail"]
        assert httpx.get(f"{stack.api_url}/users/1", timeout=5).status_code == 200
    finally:
        fault.heal()
    fault.heal()
    with existing.cursor() as cur:
        cur.execute("INSERT INTO users (name, email) VALUES ('x', 'existing@t.test')")
    existing.close()
    assert create(stack, "after@t.test").status_code == 201
    assert sql(stack.admin_dsn, "SHOW default_transaction_read_only") == [("off",)]
    failed = ReadOnlyDatabase(CLOSED)
    with pytest.raises(psycopg2.OperationalError):
        failed.inject()
    failed.heal()


# -- slow statements ---------------------------------------------------------------------------


def test_slow_statements_delay_each_statement_once_and_heal_restores_speed(stack):
    for i in range(5):
        assert create(stack, f"row{i}@t.test").status_code == 201
    delay = 0.5
    fault = SlowStatements(stack.admin_dsn, delay)
    try:
        fault.inject()
        with closing(connect(stack.app_dsn)) as conn, conn.cursor() as cur:
            one = timed(cur, "SELECT email FROM users WHERE id = 1")  # one row, one delay: the reference
            scan = timed(cur, "SELECT count(*) FROM users")  # five rows, one delay
            insert = timed(cur, "INSERT INTO users (name, email) VALUES ('x', 'slow@t.test')")
            untouched = timed(cur, "SELECT 1")
            cur.execute("SET statement_timeout = 100")
            with pytest.raises(errors.QueryCanceled):
                cur.execute("SELECT count(*) FROM users")
        with closing(connect(stack.admin_dsn)) as conn, conn.cursor() as cur:
            superuser = timed(cur, "SELECT count(*) FROM users")
        started = time.monotonic()
        assert httpx.get(f"{stack.api_url}/users/1", timeout=5).status_code == 200
        http = time.monotonic() - started
    finally:
        fault.heal()
    # a sleep is never shorter than asked; the rest is judged against the one-row statement measured side by
    # side: five rows are delayed once (not five times), an insert once (not by both USING and WITH CHECK),
    # what the fault does not touch not at all
    assert delay <= one and delay <= scan < 1.5 * one and delay <= insert < 1.5 * one, (one, scan, insert)
    assert untouched < one / 2 and superuser < one / 2, (one, untouched, superuser)
    assert http >= delay
    fault.heal()
    with closing(connect(stack.app_dsn)) as conn, conn.cursor() as cur:
        assert timed(cur, "SELECT count(*) FROM users") < one / 2  # the delay is gone
    assert sql(stack.admin_dsn, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'users'") == [
        (False, False)
    ]
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_proc WHERE proname = 'chaos_suite_delay'") == [(0,)]


def test_slow_statements_heal_after_a_failed_inject(stack):
    missing = SlowStatements(stack.admin_dsn, 0.1, table="no_such_table")
    with pytest.raises(psycopg2.errors.UndefinedTable):
        missing.inject()
    missing.heal()
    unreachable = SlowStatements(CLOSED, 0.1)
    with pytest.raises(psycopg2.OperationalError):
        unreachable.inject()
    unreachable.heal()
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_policy") == [(0,)]


# -- heals that win ------------------------------------------------------------------------------


def stuck_on_the_table(stack):
    """A session of the service's role stuck in a statement on the users table (no timeout of its own), holding
    its lock there, as a wedged service's are; its outcome (the error that ended it) lands in the list returned."""
    stuck = connect(stack.app_dsn, application_name="wedged-service")
    outcome = []

    def run():
        try:
            with stuck.cursor() as cur:
                cur.execute("SELECT count(*) FROM users")
            outcome.append("finished")
        except psycopg2.Error as error:
            outcome.append(error)
        finally:
            stuck.close()

    pid = stuck.get_backend_pid()
    threading.Thread(target=run, daemon=True).start()
    wait_until(
        lambda: (
            sql(stack.admin_dsn, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("PgSleep",)]
        ),
        5.0,
        "the statement stuck in the slowing policy",
    )
    return pid, outcome


def test_slow_statements_heal_wins_over_the_service_statements_stuck_on_the_table(stack, tmp_path):
    # the heal's DDL needs the table to itself; the suite's own statement timeout cancelled it while a
    # wedged service's statements held the table, and the scenario ended with a traceback
    sql(stack.admin_dsn, "INSERT INTO users (name, email) VALUES ('x', 'row@t.test')")  # a row to be slowed on
    ledger = FaultLedger(journal=tmp_path / "faults.json")
    fault = ledger.inject(SlowStatements(stack.admin_dsn, 600.0))
    pid, outcome = stuck_on_the_table(stack)
    started = time.monotonic()
    ledger.heal_all()  # no HealErrors
    assert time.monotonic() - started < fault.heal_timeout
    wait_until(lambda: outcome, 5.0, "the stuck statement ending")
    assert isinstance(outcome[0], psycopg2.OperationalError)  # terminated: it blocked the heal
    assert f"pid {pid}" in fault.heal_note
    assert ledger.as_records()[0]["heal"] == fault.heal_note  # in the evidence
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_policy") == [(0,)]
    assert sql(stack.admin_dsn, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'users'") == [
        (False, False)
    ]
    with closing(connect(stack.app_dsn)) as conn, conn.cursor() as cur:
        assert timed(cur, "SELECT count(*) FROM users") < 0.5


def test_a_heal_that_cannot_get_its_lock_in_time_says_so_in_one_line(stack):
    holder = connect(stack.admin_dsn)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        with pytest.raises(HealTimeout) as raised:  # a deadline shorter than the polite wait: nobody is terminated
            run_heal(stack.admin_dsn, "dropping a policy", lambda cur: cur.execute("LOCK TABLE users"), timeout=0.3)
        assert time.monotonic() - started < 3.0
        assert re.fullmatch(
            r"dropping a policy did not succeed within 0.3 s: canceling statement due to lock"
            r" timeout.*",
            str(raised.value),
        ), raised.value
        assert "\n" not in str(raised.value)
    finally:
        holder.close()


def test_a_heal_waits_politely_for_a_lock_released_within_its_patience(stack):
    # a service that cancels its own slow statements (the reference API: 1.5 s) is never cut by a heal
    holder = connect(stack.admin_dsn)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    try:
        assert run_heal(stack.admin_dsn, "taking the table", lambda cur: cur.execute("LOCK TABLE users")) == []
        with holder.cursor() as cur:
            cur.execute("SELECT 1")  # still alive: it was waited for, not terminated
    finally:
        release.join()
        holder.close()


def test_a_heal_that_still_fails_fails_the_scenario_with_one_line(stack, tmp_path):
    ledger = FaultLedger(journal=tmp_path / "faults.json")
    fault = ledger.inject(ReadOnlyDatabase(stack.admin_dsn))
    fault.dsn = CLOSED  # the database is out of reach when the heal runs
    try:
        with pytest.raises(HealErrors) as raised:
            ledger.heal_all()
        assert str(raised.value).startswith("could not heal: read-only of postgres: OperationalError: connection to")
        assert "\n" not in str(raised.value)
    finally:
        fault.dsn = stack.admin_dsn
        fault.heal()
    assert sql(stack.admin_dsn, "SHOW default_transaction_read_only") == [("off",)]


def test_residues_of_faults_a_killed_run_left_are_healed_from_the_journal_alone(stack):
    rls = "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'users'"
    slow = SlowStatements(stack.admin_dsn, 0.2)
    slow.inject()
    recorded = slow.residue()  # what the journal holds once the fault is in place
    assert heal_residue(stack.admin_dsn, recorded) == "removed the statement-slowing policy from table users"
    assert sql(stack.admin_dsn, rls) == [(False, False)]
    assert sql(stack.admin_dsn, "SELECT count(*) FROM pg_policy") == [(0,)]
    # killed in the middle of inject: the journal never learnt the table's row-security state
    SlowStatements(stack.admin_dsn, 0.2).inject()
    heal_residue(stack.admin_dsn, {**recorded, "was": None})
    assert sql(stack.admin_dsn, rls) == [(False, False)]  # no other policy: row security off again
    role = api_role(stack.app_dsn)
    sql(stack.admin_dsn, f'ALTER ROLE "{role}" CONNECTION LIMIT 0')  # left by a kill before the journal had the limit
    lines = heal_residue(
        stack.admin_dsn,
        {
            "kind": "slot_exhaustion",
            "database": database_identity(stack.admin_dsn),
            "role": "chaos_suite_slots",
            "service_role": role,
            "service_limit": None,
        },
    )
    assert lines == f"dropped role chaos_suite_slots and gave {role} back its connection limit"
    assert sql(stack.admin_dsn, "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)) == [(-1,)]
    with pytest.raises(ValueError, match="unknown fault residue"):
        heal_residue(stack.admin_dsn, {"kind": "meteor"})


# -- the scenarios fail against APIs that lack what they rely on -------------------------------------


@pytest.mark.parametrize(
    ("variant", "scenarios", "message"),
    [
        ("keeps_dead_connections", "Terminated database sessions", r"the API never recovered: failing from"),
        ("no_pool", "With no connection slot to spare", r"the error rate was [\d.]+%, not below 1%"),
        ("tiny_pool", "Slightly slow statements", r"the error rate was [\d.]+%, not below 1%"),
        (
            "discard_pool_on_any_error",
            "A lock timeout while no connection slot is free",
            r"the API (never recovered|did not recover within 1 s)",
        ),
        (
            "no_timeouts",
            "A locked table|Statements slower than",
            r"(?s)took longer than 3.5 s.*took longer than 3.5 s.*0 scenarios passed, 2 failed",
        ),
        (
            "read_only_500",
            "A read-only database refuses writes with 503",
            r"writes did not fail with 503 while reads kept working .* not answered 503: \d+ \(500 x",
        ),
    ],
)
def test_db_fault_scenarios_fail_against_an_api_without_their_protection(tmp_path, variant, scenarios, message):
    run = run_behave(
        tmp_path / "work", "-i", "db_faults", "-D", f"stack_file={BROKEN / (variant + '.toml')}", "-n", scenarios
    )
    assert run.returncode != 0, run.output[-4000:]
    assert re.search(message, run.output), run.output[-4000:]
    assert leftovers(run) == []
