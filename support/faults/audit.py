"""The residue audit: after a scenario's heals, nothing of its faults may be left on the stack.

What it looks for, each a :class:`Residue` with one line naming it and the
heal that removes it:

* a link that is disabled or carries a toxic;
* a service that should run and does not, or is frozen (SIGSTOP, ``docker
  pause``), or whose container is in another state than ``running``;
* in PostgreSQL, in one query: a session of the suite (an
  ``application_name`` of ``chaos-suite...``, or a fault's role) and the locks
  it holds; a session of the service idle in a transaction for
  :data:`IDLE_IN_TRANSACTION` s or more; a policy, trigger, function, table or
  role named ``chaos_suite...`` (every fault's objects are); an ``ALTER
  SYSTEM`` setting or a role's connection limit that differs from the
  :class:`Baseline` taken when the run started.

:meth:`ResidueAudit.audit` only reads; :func:`heal` removes what it found
and returns what it could not. An audit costs one query on a connection kept
for the run (a second, for the locks, only when a session of the suite is
left), one control call per link and a ``/proc`` read (or a Docker inspect)
per service; the suite then skips the blanket heal of the links the audit
found clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql

from support.core.waiting import WaitTimeout, wait_until
from support.faults.admin import admin_connection, database_identity, run_heal
from support.faults.concurrency import CROSS_OBJECT, drop_cross_objects
from support.faults.database import DELAY_POLICY
from support.faults.residues import heal_residue
from support.stack.database import open_connection
from support.stack.stack import Stack

__all__ = [
    "Residue",
    "Baseline",
    "ResidueAudit",
    "ResidueLeft",
    "heal",
    "describe",
    "database_residues",
    "IDLE_IN_TRANSACTION",
    "SESSION_EXIT",
]

#: seconds a session of the suite that is still listed gets to exit before it is a residue
SESSION_EXIT = 1.0
#: seconds a session of the service may sit idle in a transaction at a scenario's end before it is a residue
IDLE_IN_TRANSACTION = 2.0
#: the suite's own sessions' names and objects' prefixes (every fault names what it makes so)
_SESSION_PREFIX = "chaos-suite"
_OBJECT_PREFIX = "chaos_suite"
_AUDIT_APPLICATION = "chaos-suite-audit"

#: one round trip: (kind, name, detail) rows; ``session`` and ``idle`` rows are always residues, ``setting``
#: and ``limit`` rows only where they differ from the baseline, the others are the faults' objects
_QUERY = """
SELECT 'session', pid::text, coalesce(application_name, '') || ' as ' || coalesce(usename, '?')
  FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
   AND (application_name LIKE %(sessions)s OR usename LIKE %(objects)s)
UNION ALL
SELECT 'idle', pid::text, round(extract(epoch FROM now() - state_change)::numeric, 1)::text
  FROM pg_stat_activity
 WHERE usename = %(role)s AND state LIKE 'idle in transaction%%'
   AND state_change < now() - make_interval(secs => %(idle)s)
UNION ALL
SELECT 'policy', polname, polrelid::regclass::text FROM pg_policy WHERE polname LIKE %(objects)s
UNION ALL
SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE %(objects)s
UNION ALL
SELECT 'function', proname, pronamespace::regnamespace::text FROM pg_proc WHERE proname LIKE %(objects)s
UNION ALL
SELECT 'table', relname, relnamespace::regnamespace::text FROM pg_class
 WHERE relname LIKE %(objects)s AND relkind = 'r'
UNION ALL
SELECT 'role', rolname, '' FROM pg_roles WHERE rolname LIKE %(objects)s
UNION ALL
SELECT 'limit', rolname, rolconnlimit::text FROM pg_roles WHERE rolname NOT LIKE %(objects)s AND NOT rolsuper
UNION ALL
SELECT 'setting', name, coalesce(setting, '') FROM pg_file_settings
 WHERE sourcefile LIKE '%%postgresql.auto.conf'
"""
#: the table locks a leftover session holds, for its line
_LOCKS = """
SELECT l.pid, string_agg(DISTINCT l.mode || ' on ' || c.relname, ', ')
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
 WHERE l.pid = ANY(%s) AND l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p')
   AND c.relnamespace <> 'pg_catalog'::regnamespace
 GROUP BY l.pid
"""


class ResidueLeft(AssertionError):
    """Something of a scenario's faults was left after its heals; one line that names each (then healed),
    ``found`` the residues.

    An ``AssertionError``: behave fails the scenario with this line.
    """

    def __init__(self, line: str, found: list[Residue] | None = None) -> None:
        super().__init__(line)
        self.found = found or []


@dataclass(frozen=True)
class Residue:
    """One thing left: ``what`` names it in words, ``repair`` removes it (idempotent)."""

    what: str
    repair: Callable[[], object] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Baseline:
    """What the database said at the run's start that may differ later: ``ALTER SYSTEM`` settings and the
    connection limits of roles, by name."""

    settings: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)


class ResidueAudit:
    """The audit of one run's stack: the :class:`Baseline` taken when made (before the first scenario) and one
    connection kept for every audit (opened again after PostgreSQL restarted); ``role`` is the service's
    database role, ``timeout`` s bound its connection and query, ``start_timeout`` s the start of a service
    it finds down. :meth:`close` closes the connection (idempotent)."""

    def __init__(self, stack: Stack, role: str, timeout: float = 5.0, start_timeout: float = 30.0) -> None:
        self.stack = stack
        self.role = role
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._conn: psycopg2.extensions.connection | None = None
        rows = self._rows()
        self.baseline = Baseline(
            settings={n: d for k, n, d in rows if k == "setting"}, limits={n: d for k, n, d in rows if k == "limit"}
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _rows(self) -> list[tuple[str, str, str]]:
        """The audit query's rows, on the kept connection (a new one if it broke)."""
        params = {
            "sessions": _SESSION_PREFIX + "%",
            "objects": _OBJECT_PREFIX.replace("_", "\\_") + "%",
            "role": self.role,
            "idle": IDLE_IN_TRANSACTION,
        }
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed:
                self._conn = open_connection(
                    self.stack.admin_dsn,
                    self.timeout,
                    application_name=_AUDIT_APPLICATION,
                    autocommit=True,
                    settings={"statement_timeout": int(self.timeout * 1000)},
                )
            try:
                with self._conn.cursor() as cur:
                    cur.execute(_QUERY, params)
                    rows = [(str(k), str(n), str(d)) for k, n, d in cur.fetchall()]
                    return _with_locks(cur, rows)
            except psycopg2.OperationalError:
                self.close()  # PostgreSQL restarted since the last audit: its session is gone
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def audit(self) -> list[Residue]:
        """Everything of a scenario's faults still on the stack (links, services, the database). Reads only;
        the database is not asked while a service is not running or frozen (it may be the database)."""
        found = _links(self.stack) + _services(self.stack, self.start_timeout)
        return found if found else self._database()

    def _database(self) -> list[Residue]:
        try:
            rows = self._rows()
        except psycopg2.Error as error:
            return [Residue(f"the database could not be audited: {' '.join(str(error).split())}", _nothing)]
        return database_residues(self.stack.admin_dsn, rows, self.baseline)

    def audit_and_heal(self) -> list[Residue]:
        """Audit, repair what was found and raise :class:`ResidueLeft` naming it; else ``[]``.

        Links and services are repaired first, so that a database a scenario
        left stopped or frozen is audited once it runs again.
        """
        found = _links(self.stack) + _services(self.stack, self.start_timeout)
        unrepaired = heal(found)
        if not unrepaired:
            database = self._database()
            unrepaired += heal(database)
            found += database
        if not found:
            return found
        raise ResidueLeft(describe(found, unrepaired), found)


def describe(found: list[Residue], unrepaired: list[str]) -> str:
    """The one line a scenario fails with: what was left, and whether it could all be removed."""
    line = "left after the scenario's heals: " + "; ".join(r.what for r in found)
    return line + (" (could not remove: " + "; ".join(unrepaired) + ")" if unrepaired else " (removed)")


def _with_locks(cur, rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """``rows`` with each leftover session's granted locks in its detail, once the sessions that were only
    exiting have gone."""
    sessions = [int(n) for k, n, _ in rows if k == "session"]
    if not sessions:
        return rows
    gone = _exited(cur, sessions, SESSION_EXIT)
    cur.execute(_LOCKS, ([pid for pid in sessions if pid not in gone],))
    locks = {str(pid): held for pid, held in cur.fetchall()}
    return [
        (k, n, d + (f" holding {locks[n]}" if k == "session" and n in locks else ""))
        for k, n, d in rows
        if not (k == "session" and int(n) in gone)
    ]


def _exited(cur, pids: list[int], seconds: float) -> set[int]:
    """Which of ``pids`` have exited within ``seconds``: a client that has just closed its connection is
    still listed until its backend has exited (a few ms)."""

    def listed() -> set[int]:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        return {pid for (pid,) in cur.fetchall()}

    try:
        wait_until(listed, seconds, "the suite's sessions exiting", done=lambda left: not left, retry_on=())
    except WaitTimeout as waited:
        still = waited.last if isinstance(waited.last, set) else set(pids)
        return set(pids) - still
    return set(pids)


def heal(residues: Iterable[Residue]) -> list[str]:
    """Repair each residue; one line for each that could not be repaired."""
    problems = []
    for residue in residues:
        try:
            residue.repair()
        except Exception as error:  # noqa: BLE001 - every residue gets its repair, and the scenario its line
            problems.append(f"{residue.what}: {type(error).__name__}: {' '.join(str(error).split())}")
    return problems


# -- links and services ----------------------------------------------------------------------------------


def _links(stack: Stack) -> list[Residue]:
    found = []
    for (one, other), link in stack.links.items():
        try:
            info = link.client.proxy(link.name)
        except Exception as error:  # noqa: BLE001 - a proxy that cannot answer is itself a residue
            found.append(Residue(f"the link between {one} and {other} could not be asked: {error}", link.heal))
            continue
        said = [] if info.enabled else ["disabled"]
        said += [f"toxic {t.type} ({t.name})" for t in info.toxics]
        if said:
            found.append(Residue(f"the link between {one} and {other}: {', '.join(said)}", link.heal))
    return found


def _nothing() -> None:
    """No repair: the next scenario's preparation restarts what cannot be reached."""


def _process_state(pid: int) -> str:
    """The state letter of ``/proc/PID/stat`` (``T``: stopped), or ``""`` when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _services(stack: Stack, start_timeout: float) -> list[Residue]:
    if stack.backend == "attached":
        return []  # the suite neither started nor can start them
    found = []
    for name in stack.start_order:
        service = stack.services[name]

        def start(service=service) -> None:
            service.resume()
            service.start(start_timeout)

        status = getattr(service, "status", None)
        if callable(status):  # a container
            state = status()
            if state != "running":
                found.append(Residue(f"{name} is {state}, not running", start))
            continue
        pid = getattr(service, "pid", None)
        if pid is None:
            found.append(Residue(f"{name} is not running", start))
        elif _process_state(pid) in ("T", "t"):
            found.append(Residue(f"{name} is paused (SIGSTOP)", start))
    return found


# -- the database --------------------------------------------------------------------------------------------


def database_residues(dsn: str, rows: Iterable[tuple[str, str, str]], base: Baseline) -> list[Residue]:
    """The residues among the audit query's ``(kind, name, detail)`` rows, judged against ``base``; each with
    its repair on ``dsn``."""
    found = []
    here = database_identity(dsn)
    sessions: dict[str, list[int]] = {}
    for kind, name, detail in rows:
        if kind == "session":
            sessions.setdefault(detail, []).append(int(name))
    for detail, pids in sessions.items():  # a fault that took every slot left many alike: one line for them
        if len(pids) == 1:
            what = f"session {pids[0]} of the suite ({detail})"
        else:
            shown = ", ".join(map(str, pids[:5])) + (", ..." if len(pids) > 5 else "")
            what = f"{len(pids)} sessions of the suite ({detail}): pid {shown}"
        found.append(Residue(what, _terminate(dsn, pids)))
    for kind, name, detail in rows:
        if kind == "idle":
            found.append(
                Residue(
                    f"session {name} of the service idle in a transaction for {detail} s", _terminate(dsn, [int(name)])
                )
            )
        elif kind == "setting" and base.settings.get(name) != detail:
            was = base.settings.get(name)
            found.append(Residue(f"ALTER SYSTEM setting {name} = {detail!r}", _alter_system(dsn, name, was)))
        elif kind == "limit" and name in base.limits and base.limits[name] != detail:
            found.append(
                Residue(
                    f"role {name} at connection limit {detail} (was {base.limits[name]})",
                    _role_limit(dsn, name, base.limits[name]),
                )
            )
        elif kind == "policy":
            found.append(Residue(f"row-security policy {name} on {detail}", _drop_policy(dsn, here, name, detail)))
        elif kind in ("trigger", "function", "table"):
            where = f" on {detail}" if kind == "trigger" else ""
            found.append(Residue(f"{kind} {name}{where}", _drop_object(dsn, kind, name, detail)))
        elif kind == "role":
            found.append(Residue(f"role {name}", _drop_role(dsn, here, name)))
    return found


def _terminate(dsn: str, pids: list[int]) -> Callable[[], object]:
    def repair() -> None:
        with admin_connection(dsn, 10.0) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (pids,))

    return repair


def _alter_system(dsn: str, name: str, was: str | None) -> Callable[[], object]:
    def repair(cur) -> None:
        if was is None:
            cur.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        else:
            cur.execute(sql.SQL("ALTER SYSTEM SET {} = %s").format(sql.Identifier(name)), (was,))
        cur.execute("SELECT pg_reload_conf()")

    return lambda: run_heal(dsn, f"resetting {name}", repair, transaction=False)


def _role_limit(dsn: str, role: str, limit: str) -> Callable[[], object]:
    def repair(cur) -> None:
        cur.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(int(limit))))

    return lambda: run_heal(dsn, f"restoring the connection limit of {role}", repair)


def _drop_policy(dsn: str, here: str, name: str, table: str) -> Callable[[], object]:
    if name == DELAY_POLICY:  # the slowing fault's own heal: its function too, and row security as it was
        return lambda: heal_residue(dsn, {"kind": "slow_statements", "database": here, "table": table})

    def repair(cur) -> None:
        cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), sql.SQL(table)))

    return lambda: run_heal(dsn, f"dropping policy {name}", repair)


def _drop_object(dsn: str, kind: str, name: str, detail: str) -> Callable[[], object]:
    if name == CROSS_OBJECT:  # the deadlock fault's trigger, function and side table
        table = detail if kind == "trigger" else "users"
        return lambda: drop_cross_objects(dsn, table)
    drop = {
        "trigger": sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), sql.SQL(detail)),
        "function": sql.SQL("DROP FUNCTION IF EXISTS {}.{}").format(sql.Identifier(detail), sql.Identifier(name)),
        "table": sql.SQL("DROP TABLE IF EXISTS {}.{}").format(sql.Identifier(detail), sql.Identifier(name)),
    }[kind]
    return lambda: run_heal(dsn, f"dropping {kind} {name}", lambda cur: cur.execute(drop))


def _drop_role(dsn: str, here: str, name: str) -> Callable[[], object]:
    def repair(cur) -> None:  # no new session first: a slot taker still running would take them back
        cur.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))
        cur.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", (name,))
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    return lambda: run_heal(dsn, f"dropping role {name}", repair, transaction=False)
