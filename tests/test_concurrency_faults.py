"""Database concurrency faults on a real stack: deadlocks and serialization failures the API's writes run into,
rows held by an idle transaction, the API's running statements cancelled; their heals (also after SIGKILL of the suite, from the
journal), and the scenarios of features/database/concurrency.feature against the reference API and against
broken variants that lack the protection.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing

import httpx
import psycopg2
import pytest
from docker_engine import require_docker
from psycopg2 import errors
from suite_runner import BROKEN, REPO, leftovers, run_behave

from support.core.config import Settings
from support.core.waiting import wait_until
from support.faults.admin import api_role
from support.faults.base import FaultHadNoEffect
from support.faults.cgroups import FaultUnavailable
from support.faults.concurrency import (
    CANCEL_APPLICATION,
    CANCEL_OBJECT,
    CROSS_APPLICATION,
    CROSS_OBJECT,
    HOLD_APPLICATION,
    Deadlocks,
    RowsHeld,
    StatementsCancelled,
)
from support.faults.residues import heal_residue
from support.faults.serialization import SERIAL_APPLICATION, SERIAL_OBJECT, SerializationFailures
from support.run.suite import start_suite

FEATURE = "features/database/concurrency.feature"


@pytest.fixture(scope="module")
def suite():
    suite = start_suite(Settings(work_root="/tmp/chaos-suite-tests", load_baseline=0.5))
    yield suite
    suite.close()


@pytest.fixture
def state(suite):
    state = suite.begin_scenario("a concurrency fault")
    yield state
    suite.end_scenario(state)


def sql(dsn, query, params=None):
    with closing(psycopg2.connect(dsn, connect_timeout=3)) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def cross_objects(dsn, name=CROSS_OBJECT):
    return sql(
        dsn,
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = %(n)s) + (SELECT count(*) FROM pg_proc"
        " WHERE proname = %(n)s) + (SELECT count(*) FROM pg_class"
        " WHERE relname IN (%(n)s, %(n)s || '_failures', %(n)s || '_count'))",
        {"n": name},
    )[0][0]


def server_isolation(dsn):
    """The ALTER SYSTEM value of default_transaction_isolation (None: none), and what a new session gets."""
    auto = sql(
        dsn,
        "SELECT setting FROM pg_file_settings WHERE name = 'default_transaction_isolation'"
        " AND sourcefile LIKE '%%postgresql.auto.conf'",
    )
    return (auto[0][0] if auto else None), sql(dsn, "SHOW transaction_isolation")[0][0]


def sessions_named(dsn, application):
    return sql(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,))[0][0]


# -- deadlocks ---------------------------------------------------------------------------------------


def test_deadlocks_abort_the_api_writes_with_40p01_and_the_heal_removes_every_trace(state):
    stack = state.stack
    before = sql(stack.admin_dsn, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[0][0]
    state.start_load(state.open_load(40))
    fault = Deadlocks(stack.admin_dsn, stack.workload.table)
    state.hold(fault, 1.5)
    state.stop_load()
    assert fault.cycles >= 1
    assert fault.heal_note.startswith(f"{fault.cycles} deadlock(s) made")
    # PostgreSQL's own detector broke the cycles, each time aborting the API's transaction (503 to the client)
    wait_until(
        lambda: (
            sql(stack.admin_dsn, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[0][0]
            >= before + fault.cycles
        ),
        15.0,  # a backend reports its counts within about 10 s of going idle
        "the deadlocks counted in pg_stat_database",
    )
    refused = [r for r in state.history if r.op == "write" and r.status == 503]
    assert refused, "no write was refused while the deadlocks were made"
    assert cross_objects(stack.admin_dsn) == 0
    assert sessions_named(stack.admin_dsn, CROSS_APPLICATION) == 0
    fault.heal()  # idempotent
    assert httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": "after@t.test"}).status_code == 201


def test_deadlocks_without_writes_say_so_and_leave_nothing(state):
    fault = Deadlocks(state.stack.admin_dsn, state.stack.workload.table, timeout=1.0)
    with pytest.raises(FaultHadNoEffect, match="no write to the users table met the deadlock within 1 s"):
        fault.inject()
    fault.heal()
    assert cross_objects(state.stack.admin_dsn) == 0


_KILLED_MID_FAULT = """
import sys, time
from pathlib import Path
from support.faults.concurrency import Deadlocks, RowsHeld, StatementsCancelled
from support.faults.serialization import SerializationFailures
from support.faults.ledger import FaultLedger
ledger = FaultLedger(journal=Path(sys.argv[2]))
dsn, kind = sys.argv[1], sys.argv[3]
if kind == "deadlocks":
    fault = Deadlocks(dsn, "users")
    fault.cycles = 1  # no load here: the fault's objects and its session are what a kill leaves
    ledger.inject(fault)
elif kind == "serialization":
    fault = SerializationFailures(dsn, "users", hold=5.0)
    fault.failures = 1  # no load here (the session's first count comes after its 5 s hold)
    ledger.inject(fault)
elif kind == "cancel":
    fault = StatementsCancelled(dsn, "app", "users")
    fault.cancelled = 1  # no load here: the fault's objects and its session are what a kill leaves
    ledger.inject(fault)
else:
    ledger.inject(RowsHeld(dsn, "users"))
print("ready", flush=True)
time.sleep(60)
"""


def _killed_mid_fault(stack, tmp_path, kind):
    journal = tmp_path / "faults.json"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MID_FAULT, stack.admin_dsn, str(journal), kind],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    return json.loads(journal.read_text())["open_faults"]


def test_a_deadlock_fault_killed_with_the_suite_is_healed_from_the_journal(state, tmp_path):
    stack = state.stack
    open_faults = _killed_mid_fault(stack, tmp_path, "deadlocks")
    assert [f["fault"] for f in open_faults] == ["deadlocks"]
    assert cross_objects(stack.admin_dsn) == 3  # trigger, function and side table outlive the killed suite
    line = heal_residue(stack.admin_dsn, open_faults[0]["residue"])
    assert line == "dropped the deadlock trigger from table users"
    assert cross_objects(stack.admin_dsn) == 0
    heal_residue(stack.admin_dsn, open_faults[0]["residue"])  # idempotent
    # the crossing session died with the process: PostgreSQL ends it when the socket closes
    wait_until(lambda: sessions_named(stack.admin_dsn, CROSS_APPLICATION) == 0, 5.0, "the crossing session ending")


# -- serialization failures ----------------------------------------------------------------------------


def test_serialization_failures_abort_the_api_writes_with_40001_and_the_heal_removes_every_trace(state):
    stack = state.stack
    assert server_isolation(stack.admin_dsn) == (None, "read committed")
    state.start_load(state.open_load(40))
    fault = SerializationFailures(stack.admin_dsn, stack.workload.table)
    state.inject(fault)
    try:
        assert server_isolation(stack.admin_dsn) == ("serializable", "serializable")
        assert sessions_named(stack.admin_dsn, SERIAL_APPLICATION) == 1
        state.let_load_run(1.0)  # the API's pooled sessions took the reload at their next statement
    finally:
        state.ledger.heal(fault)
    state.stop_load()
    assert fault.failures >= 1 and fault.holds >= 1
    assert fault.heal_note.startswith(f"{fault.failures} serialization failure(s) of the service's writes")
    refused = [r for r in state.history if r.op == "write" and r.status == 503]
    assert refused, "no write was refused while the writes failed to serialize"
    assert not [r for r in state.history if r.status == 500]
    assert server_isolation(stack.admin_dsn) == (None, "read committed")
    assert cross_objects(stack.admin_dsn, SERIAL_OBJECT) == 0  # trigger, function, side table and its sequence
    assert sessions_named(stack.admin_dsn, SERIAL_APPLICATION) == 0
    fault.heal()  # idempotent
    assert httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": "after@t.test"}).status_code == 201


def test_serialization_failures_without_writes_say_so_and_leave_nothing(state):
    fault = SerializationFailures(state.stack.admin_dsn, state.stack.workload.table, timeout=1.0)
    with pytest.raises(FaultHadNoEffect, match=r"no write to the users table within 1 s \(is a load writing to it\?\)"):
        fault.inject()
    fault.heal()
    assert cross_objects(state.stack.admin_dsn, SERIAL_OBJECT) == 0
    assert server_isolation(state.stack.admin_dsn) == (None, "read committed")


def test_serialization_failures_need_a_superuser_and_say_so_in_one_line(state):
    stack = state.stack
    fault = SerializationFailures(stack.app_dsn, stack.workload.table)  # the service's role: no superuser
    with pytest.raises(FaultUnavailable) as refused:
        fault.inject()
    line = str(refused.value)
    assert "\n" not in line and f"the suite's admin role {api_role(stack.app_dsn)} on" in line
    assert "is not a superuser: give it SUPERUSER or leave this scenario out" in line
    fault.heal()  # nothing was changed: nothing to undo
    assert cross_objects(stack.admin_dsn, SERIAL_OBJECT) == 0 and server_isolation(stack.admin_dsn)[0] is None


def test_a_serialization_fault_killed_with_the_suite_is_healed_from_the_journal(state, tmp_path):
    stack = state.stack
    open_faults = _killed_mid_fault(stack, tmp_path, "serialization")
    assert [f["fault"] for f in open_faults] == ["serialization failures"]
    residue = open_faults[0]["residue"]
    assert residue["kind"] == "serialization" and residue["was"] is None
    # the server-wide default, the trigger, its function and the side table (and sequence) outlive the killed suite
    assert server_isolation(stack.admin_dsn)[0] == "serializable"
    assert cross_objects(stack.admin_dsn, SERIAL_OBJECT) == 4
    line = heal_residue(stack.admin_dsn, residue)
    assert line == "reset the server-wide isolation default and dropped the serialization trigger from table users"
    assert server_isolation(stack.admin_dsn) == (None, "read committed")
    assert cross_objects(stack.admin_dsn, SERIAL_OBJECT) == 0
    heal_residue(stack.admin_dsn, residue)  # idempotent
    wait_until(lambda: sessions_named(stack.admin_dsn, SERIAL_APPLICATION) == 0, 5.0, "the fault's session ending")


def test_a_serialization_residue_without_the_prior_default_undoes_only_the_faults_own_value(state):
    stack = state.stack
    residue = {"kind": "serialization", "database": "-", "table": "users"}  # killed before the fault read it
    try:
        sql(stack.admin_dsn, "ALTER SYSTEM SET default_transaction_isolation = 'repeatable read'")
        heal_residue(stack.admin_dsn, residue)
        assert server_isolation(stack.admin_dsn) == ("repeatable read", "repeatable read")  # the server's own
        sql(stack.admin_dsn, "ALTER SYSTEM SET default_transaction_isolation = 'serializable'")
        heal_residue(stack.admin_dsn, residue)
        assert server_isolation(stack.admin_dsn) == (None, "read committed")  # the fault's value
    finally:
        sql(stack.admin_dsn, "ALTER SYSTEM RESET default_transaction_isolation")
        sql(stack.admin_dsn, "SELECT pg_reload_conf()")


# -- rows held ---------------------------------------------------------------------------------------


def test_rows_held_block_their_writers_not_readers_or_inserts_until_healed(state):
    stack = state.stack
    state.create_users(3)
    fault = RowsHeld(stack.admin_dsn, stack.workload.table)
    fault.inject()
    try:
        assert fault.rows == 3
        with closing(psycopg2.connect(stack.app_dsn, options="-c lock_timeout=200")) as conn, conn.cursor() as cur:
            with pytest.raises(errors.LockNotAvailable):
                cur.execute("UPDATE users SET name = 'x' WHERE id = %s", (state.users[0].id,))
            conn.rollback()
            cur.execute("SELECT count(*) FROM users")  # a plain read does not wait
            assert cur.fetchone()[0] == 3
        assert httpx.get(f"{stack.api_url}/users/{state.users[0].id}", timeout=2).status_code == 200
        assert httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": "new@t.test"}).status_code == 201
    finally:
        fault.heal()
    fault.heal()
    assert sessions_named(stack.admin_dsn, HOLD_APPLICATION) == 0
    sql(stack.app_dsn, "UPDATE users SET name = 'x' WHERE id = %s", (state.users[0].id,))


def test_rows_held_on_an_empty_table_say_so(state):
    fault = RowsHeld(state.stack.admin_dsn, state.stack.workload.table)
    with pytest.raises(FaultHadNoEffect, match="the users table has no row to hold"):
        fault.inject()
    fault.heal()
    assert sessions_named(state.stack.admin_dsn, HOLD_APPLICATION) == 0


def test_rows_held_by_a_killed_suite_are_released_with_its_session(state, tmp_path):
    stack = state.stack
    state.create_users(1)
    open_faults = _killed_mid_fault(stack, tmp_path, "rows")
    assert [(f["fault"], f["residue"]) for f in open_faults] == [("rows held", None)]  # nothing outlives the run
    wait_until(lambda: sessions_named(stack.admin_dsn, HOLD_APPLICATION) == 0, 5.0, "the holding session ending")
    sql(stack.app_dsn, "SET lock_timeout = 200; UPDATE users SET name = 'free'")


# -- cancelled statements ------------------------------------------------------------------------------------


def _sleep_as_api(stack, seconds, outcome):
    try:
        sql(stack.app_dsn, "SELECT pg_sleep(%s)", (seconds,))
        outcome.append("finished")
    except errors.QueryCanceled:
        outcome.append("cancelled")


def test_cancelling_stops_the_api_roles_running_statements_and_counts_the_writes_the_server_cancelled(state):
    stack = state.stack
    outcome: list[str] = []
    sleeper = threading.Thread(target=_sleep_as_api, args=(stack, 5, outcome))
    state.start_load(state.open_load(40))
    started = time.monotonic()
    sleeper.start()
    fault = StatementsCancelled(stack.admin_dsn, api_role(stack.app_dsn), stack.workload.table)
    state.hold(fault, 1.0)
    state.stop_load()
    sleeper.join(10)
    assert outcome == ["cancelled"]  # a statement of the role that is no write is cancelled too (and not counted)
    assert time.monotonic() - started < 4
    # every write cancelled in the trigger was a request answered 503 (a cancel elsewhere is one too, uncounted)
    refused = [r for r in state.history if r.op == "write" and r.status == 503]
    assert 1 <= fault.cancelled <= len(refused), (fault.cancelled, len(refused))
    assert fault.cancelled <= fault.signalled
    assert fault.heal_note == f"{fault.cancelled} statement(s) cancelled, {fault.signalled} signal(s) sent"
    assert not [r for r in state.history if r.status == 500]
    assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 0  # trigger, function, side table, its sequence
    assert sessions_named(stack.admin_dsn, CANCEL_APPLICATION) == 0
    assert not fault.instant
    fault.heal()  # idempotent
    assert httpx.post(f"{stack.api_url}/users", json={"name": "n", "email": "after@t.test"}).status_code == 201


def test_cancelling_once_returns_after_one_cancelled_write_healed_and_is_instant(state):
    stack = state.stack
    state.start_load(state.open_load(40))
    fault = StatementsCancelled(stack.admin_dsn, api_role(stack.app_dsn), stack.workload.table, once=True)
    state.inject(fault)
    try:
        assert fault.cancelled >= 1 and fault.instant and fault.name == "statements cancelled once"
        assert fault.signalled <= 2 * fault.cancelled  # one signal at a time, each waited for
        assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 0  # healed before inject returned
        assert sessions_named(stack.admin_dsn, CANCEL_APPLICATION) == 0
    finally:
        state.stop_load()


def test_cancelling_with_nothing_running_says_so_and_leaves_nothing(state):
    stack = state.stack
    fault = StatementsCancelled(stack.admin_dsn, "nobody_runs_this", stack.workload.table, timeout=0.3)
    with pytest.raises(FaultHadNoEffect, match=r"no statement of nobody_runs_this ran within 0.3 s to cancel"):
        fault.inject()
    fault.heal()
    assert fault.heal_note == "0 statement(s) cancelled, 0 signal(s) sent"
    assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 0
    assert sessions_named(stack.admin_dsn, CANCEL_APPLICATION) == 0


def test_cancelling_needs_a_role_that_may_signal_and_says_so_in_one_line(state):
    stack = state.stack
    role = api_role(stack.app_dsn)
    fault = StatementsCancelled(stack.app_dsn, role, stack.workload.table)  # the service's own role: no superuser
    with pytest.raises(FaultUnavailable) as refused:
        fault.inject()
    line = str(refused.value)
    assert "\n" not in line and f"the suite's admin role {role} on" in line
    assert "is neither: give it SUPERUSER or leave this scenario out" in line
    with pytest.raises(FaultUnavailable, match=r"^there is no no_such_table table in .* to cancel writes to"):
        StatementsCancelled(stack.admin_dsn, role, "no_such_table").inject()
    fault.heal()  # nothing was changed: nothing to undo
    assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 0


def test_a_cancel_fault_killed_with_the_suite_is_healed_from_the_journal(state, tmp_path):
    stack = state.stack
    open_faults = _killed_mid_fault(stack, tmp_path, "cancel")
    assert [f["fault"] for f in open_faults] == ["statements cancelled"]
    assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 4  # trigger, function, side table and its sequence
    line = heal_residue(stack.admin_dsn, open_faults[0]["residue"])
    assert line == "dropped the cancel trigger from table users"
    assert cross_objects(stack.admin_dsn, CANCEL_OBJECT) == 0
    heal_residue(stack.admin_dsn, open_faults[0]["residue"])  # idempotent
    wait_until(lambda: sessions_named(stack.admin_dsn, CANCEL_APPLICATION) == 0, 5.0, "the cancelling session ending")


# -- the scenarios, against the reference and against variants without the protection ------------------------------


def test_the_reference_api_passes_every_concurrency_scenario(tmp_path):
    run = run_behave(tmp_path / "work", "--tags=@catalog", FEATURE)
    assert run.returncode == 0, run.output[-4000:]
    assert "5 scenarios passed, 0 failed" in run.output
    assert leftovers(run) == []


@pytest.mark.parametrize(
    ("variant", "scenarios", "message"),
    [
        (
            # the cancelled-statements scenario too: the fault returns only once the server cancelled a write
            # (its trigger's count, not the signals sent), so the variant has a 500 to answer every time
            "concurrency_500",
            "Writes that deadlock|Writes that fail to serialize|Cancelled statements",
            r"(?s)(ASSERT FAILED: \d+ failed requests? not answered with 503: \d+ with another status \(500 x.*){3}"
            r"0 scenarios passed, 3 failed",
        ),
        (
            "locking_reads",
            "Rows held by an idle transaction",
            r"the error rate was [\d.]+%, not below 1%",
        ),
    ],
)
def test_the_concurrency_scenarios_fail_against_an_api_without_their_protection(tmp_path, variant, scenarios, message):
    run = run_behave(
        tmp_path / "work",
        "--tags=@catalog",
        FEATURE,
        "-D",
        f"stack_file={BROKEN / (variant + '.toml')}",
        "-n",
        scenarios,
    )
    assert run.returncode != 0, run.output[-4000:]
    assert re.search(message, run.output), run.output[-4000:]
    assert leftovers(run) == []


def test_the_serialization_scenario_passes_on_docker(tmp_path):
    require_docker()
    run = run_behave(
        tmp_path / "work", "-D", "backend=docker", "--tags=@catalog", FEATURE, "-n", "Writes that fail to serialize"
    )
    assert run.returncode == 0, run.output[-4000:]
    assert "1 scenario passed, 0 failed" in run.output
    assert leftovers(run) == []
