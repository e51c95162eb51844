"""Background processing: every write the service acknowledged is, in time, processed by its worker.

A service with a worker (a queue table, a job runner) may acknowledge a write
before the work it stands for is done; what it must not do is lose that work. The
workload's ``processed_sql`` says which of the acknowledged keys are processed;
this module waits, on the clock, for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from support.checks.messages import NO_LOAD, keys, plural
from support.checks.verdict import CheckFailed
from support.core.waiting import WaitTimeout, wait_until
from support.load.history import OK, Request
from support.stack import database
from support.stack.workload import Workload

__all__ = ["acknowledged_keys", "processed_keys", "check_processed_within"]


def acknowledged_keys(history: Sequence[Request]) -> list[str]:
    """The keys of every write the history saw acknowledged (an ``ok`` answer), in order."""
    return list(dict.fromkeys(r.key for r in history if r.op == "write" and r.outcome == OK))


def processed_keys(dsn: str, workload: Workload, wanted: Sequence[str]) -> set[str]:
    """The keys among ``wanted`` that the workload's ``processed_sql`` finds processed."""
    with database.connect(dsn, timeout=10.0) as conn, conn.cursor() as cur:
        cur.execute(workload.processed_sql, {"keys": list(wanted)})
        return {str(row[0]) for row in cur.fetchall()}


def check_processed_within(
    dsn: str,
    workload: Workload,
    history: Sequence[Request] | None,
    since: float,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Fail unless every acknowledged write of ``history`` is processed within ``seconds`` s.

    The bound runs from ``since`` (monotonic s: the last fault's end) or, for a write
    acknowledged after it, from its answer; the database is polled until then.
    Returns how many acknowledged writes were found processed.
    """
    if history is None:
        raise CheckFailed(NO_LOAD)
    if not workload.processed_sql:
        raise CheckFailed("the stack file's [workload] has no processed_sql saying which records are processed")
    wanted = acknowledged_keys(history)
    if not wanted:
        raise CheckFailed("the load had no acknowledged write to be processed")
    last_ack = max(r.end for r in history if r.op == "write" and r.outcome == OK)
    remaining = max(since, last_ack) + seconds - clock()
    try:
        wait_until(
            lambda: processed_keys(dsn, workload, wanted),
            max(remaining, 0.0),
            f"every acknowledged {workload.records} processed",
            done=lambda found: len(found) == len(wanted),
            retry_on=database.DatabaseError,
            interval=0.2,
            clock=clock,
        )
    except WaitTimeout as waited:
        found = waited.last if isinstance(waited.last, set) else set()
        missing = [key for key in wanted if key not in found]
        reason = f" (last error: {waited.error})" if waited.error is not None and not found else ""
        raise CheckFailed(
            f"{plural(len(missing), 'acknowledged write')} not processed within {seconds:g} s of the "
            f"fault's end: {keys(missing)} (of {len(wanted)} acknowledged; "
            f"processed: {len(found)}){reason}"
        ) from None
    return len(wanted)
