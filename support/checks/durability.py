"""Durability: what became of the load's writes once read back from the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from support.checks.messages import KEYS_AT_MOST, NO_LOAD, keys, origin, plural, seconds
from support.checks.verdict import CheckFailed
from support.load.history import INFO, OK, Request

__all__ = [
    "Durability",
    "LostRead",
    "written_keys",
    "durability",
    "lost_on_read",
    "without_lost_reads",
    "lost_reads_sentence",
    "check_no_lost_writes",
]


@dataclass(frozen=True)
class Durability:
    """What became of the history's writes once read back from the database.

    ``acknowledged`` counts keys written with an ``ok`` answer; ``lost`` and
    ``changed`` list those missing or with other content (violations);
    ``info_present``/``info_absent`` count keys whose writes all had an
    unknown (``info``) outcome and that exist / do not exist (either is
    allowed); ``fail_present`` lists keys whose writes were all answered as not
    applied and that exist anyway (a violation).
    """

    acknowledged: int
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    info_present: int = 0
    info_absent: int = 0
    fail_present: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no acknowledged write is lost or changed and no refused write appeared."""
        return not (self.lost or self.changed or self.fail_present)


@dataclass(frozen=True)
class LostRead:
    """An acknowledged write the API later answered 404 for: a lost write, seen through the API.

    ``acknowledged_at`` is the end of the write's first ok answer, ``first_404_at`` the start of the
    first read of it answered 404 after that (monotonic s); ``reads`` how many reads of it got 404.
    """

    key: str
    acknowledged_at: float
    first_404_at: float
    reads: int


def lost_on_read(history: Sequence[Request]) -> list[LostRead]:
    """The acknowledged writes that a read started after the acknowledgement found missing (404),
    by the first such read's start."""
    acked: dict[str, float] = {}
    for r in history:
        if r.op == "write" and r.outcome == OK:
            acked[r.key] = min(acked.get(r.key, r.end), r.end)
    found: dict[str, list[float]] = {}
    for r in history:
        if r.op == "read" and r.status == 404 and r.key in acked and r.start >= acked[r.key]:
            found.setdefault(r.key, []).append(r.start)
    lost = [LostRead(k, acked[k], min(starts), len(starts)) for k, starts in found.items()]
    return sorted(lost, key=lambda x: x.first_404_at)


def without_lost_reads(history: Sequence[Request], lost: Sequence[LostRead]) -> list[Request]:
    """The history without the 404 reads of ``lost`` writes (what is left says how available the API was)."""
    gone = {x.key for x in lost}
    return [r for r in history if not (r.op == "read" and r.status == 404 and r.key in gone)]


def lost_reads_sentence(lost: Sequence[LostRead], history: Sequence[Request]) -> str:
    """The lost writes as a sentence: "N acknowledged writes lost: the API acknowledged them, then answered
    404 for them: KEY (acknowledged at 1.2 s, 404 from 3.4 s, 7 reads), ...", in seconds into the load."""
    since = origin(history)
    shown = ", ".join(
        f"{x.key} (acknowledged at {seconds(x.acknowledged_at - since)}, 404 from {seconds(x.first_404_at - since)},"
        f" {plural(x.reads, 'read')})"
        for x in lost[:KEYS_AT_MOST]
    )
    more = f" and {len(lost) - KEYS_AT_MOST} more" if len(lost) > KEYS_AT_MOST else ""
    return (
        f"{plural(len(lost), 'acknowledged write')} lost: the API acknowledged "
        f"{'it' if len(lost) == 1 else 'them'}, then answered 404 for {'it' if len(lost) == 1 else 'them'}: "
        f"{shown}{more}"
    )


def written_keys(history: Sequence[Request]) -> list[str]:
    """The keys (emails) of every write the history attempted, whatever its outcome, in order."""
    return list(dict.fromkeys(r.key for r in history if r.op == "write"))


def durability(history: Sequence[Request], rows: Mapping[str, Sequence[str]]) -> Durability:
    """Compare the history's writes with ``rows``: key -> the compared columns as read back by SQL.

    A key's writes are judged together: any ``ok`` write makes it acknowledged,
    and its stored content must equal the compared fields of its last ``ok``
    write (``Request.body``: the workload's ``compare`` values, tab-separated);
    otherwise any ``info`` write makes it unknown; otherwise (only ``fail``
    writes) it must be absent. Rows for keys the history never
    wrote are ignored (the caller selects the rows).
    """
    by_key: dict[str, list[Request]] = {}
    for r in history:
        if r.op == "write":
            by_key.setdefault(r.key, []).append(r)
    acknowledged = 0
    lost: list[str] = []
    changed: list[str] = []
    fail_present: list[str] = []
    info_present = info_absent = 0
    for key, writes in by_key.items():
        oks = [w for w in writes if w.outcome == OK]
        present = key in rows
        if oks:
            acknowledged += 1
            expected = tuple(max(oks, key=lambda w: w.start).body.split("\t"))
            if not present:
                lost.append(key)
            elif tuple(rows[key]) != expected:
                changed.append(key)
        elif any(w.outcome == INFO for w in writes):
            if present:
                info_present += 1
            else:
                info_absent += 1
        elif present:
            fail_present.append(key)
    return Durability(
        acknowledged=acknowledged,
        lost=lost,
        changed=changed,
        info_present=info_present,
        info_absent=info_absent,
        fail_present=fail_present,
    )


def check_no_lost_writes(durability: Durability | None) -> None:
    """Fail if an acknowledged write is missing or changed, or a write answered as not applied exists."""
    if durability is None:
        raise CheckFailed(NO_LOAD)
    problems = []
    if durability.lost:
        problems.append(f"{plural(len(durability.lost), 'acknowledged write')} lost: {keys(durability.lost)}")
    if durability.changed:
        problems.append(f"{plural(len(durability.changed), 'acknowledged write')} changed: {keys(durability.changed)}")
    if durability.fail_present:
        problems.append(
            f"{plural(len(durability.fail_present), 'write')} answered as not applied exist anyway:"
            f" {keys(durability.fail_present)}"
        )
    if problems:
        raise CheckFailed(
            "; ".join(problems) + f" (of {durability.acknowledged} acknowledged writes;"
            f" unknown writes: {durability.info_present} present, {durability.info_absent} absent)"
        )
